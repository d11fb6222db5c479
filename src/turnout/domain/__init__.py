"""Pure types of turnout: requests, usage and the error tree. No I/O, nothing else of turnout."""
