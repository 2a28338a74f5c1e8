"""The reference participant over MQTT after its broker restarts.

Its MQTT session is clean, so a restarted broker has forgotten what it subscribed to: it
subscribes again on every connection, or it would never hear of another round. And a
retained topic may have been cleared while it was away (the broker sends nothing for a
cleared topic), so it keeps only what the broker sends again: a stale sum dict would have
its update sealed for the wrong sum participants.
"""

import json

from pet.participant.mqtt import DeviceClient
from tests.test_gateway import wait_for


def test_a_participant_hears_the_round_again_after_the_broker_restarts(mosquitto_factory):
    broker = mosquitto_factory()  # without persistence: a restart forgets every retained message
    address = (broker.host, broker.port)
    device, publisher = DeviceClient(address, "pet", bytes(32)), DeviceClient(address, "pet", bytes(range(32)))
    try:
        for topic, payload in (("pet/round/params", b"round 1"), ("pet/round/sums", b"sums 1")):
            publisher.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: device.topic("round/sums") == b"sums 1", what="the first round")
        broker.kill()  # SIGKILL, then the same port
        broker.start()
        wait_for(lambda: publisher.client.is_connected() and device.client.is_connected(), timeout=30,
                 what="both clients to connect again")
        publisher.client.publish("pet/round/params", b"round 2", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: device.topic("round/params") == b"round 2", timeout=20, what="the next round")
        assert device.topic("round/sums") is None  # gone from the broker, so gone here
        ack = {"accepted": True, "reason": "", "detail": "", "msg": "0123456789abcdef"}
        publisher.client.publish(f"pet/dev/{device.pk_hex}/ack", json.dumps(ack), qos=1)
        assert device.ack("0123456789abcdef", 10) == ack  # its ack topic too
    finally:
        device.close()
        publisher.close()
