from tlsflow.cli import main

raise SystemExit(main())
