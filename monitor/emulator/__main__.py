"""`python -m monitor.emulator --instances N ...`: run a fleet until SIGINT or SIGTERM."""

from monitor.emulator.run import main

raise SystemExit(main())
