"""`python -m lsh` is the same as the `lsh` command."""

from lsh.cli import main

raise SystemExit(main())
