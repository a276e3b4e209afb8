"""`python -m genie_play.train PHASE ...` == `genie-play train PHASE ...` (the entry for torchrun)."""
import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
