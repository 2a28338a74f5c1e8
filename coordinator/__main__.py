"""`python -m coordinator`: the same as `pet-coordinator`."""

from coordinator.cli import main

raise SystemExit(main())
