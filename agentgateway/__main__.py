import sys

from agentgateway.cli import main

sys.exit(main())
