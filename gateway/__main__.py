"""`python -m gateway`: the same as `pet-gateway`."""

from gateway.cli import main

raise SystemExit(main())
