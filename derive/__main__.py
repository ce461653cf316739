from derive.cli.main import main

raise SystemExit(main())
