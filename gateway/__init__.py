"""The gateway: relays device messages between an MQTT broker and the coordinator (docs/gateway.md)."""
