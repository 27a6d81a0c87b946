from torchstarter.cli.main import main

raise SystemExit(main())
