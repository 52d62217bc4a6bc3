"""`python -m faceapi_client ...` is the `faceapi` command."""

import sys

from faceapi_client.cli import main

sys.exit(main())
