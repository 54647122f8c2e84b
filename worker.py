"""Entry point of the worker process: `python worker.py`."""

from loanflow.worker import main

if __name__ == "__main__":
    main()
