from llamaserve.cli import main

raise SystemExit(main())
