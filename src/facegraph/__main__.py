"""`python -m facegraph ...` (also what `torchrun -m facegraph train ...` runs)."""

from facegraph.cli import main

raise SystemExit(main())
