from optimlab.cli import main

raise SystemExit(main())
