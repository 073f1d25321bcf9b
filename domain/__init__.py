"""Pure domain rules of the card program: values in, ledger intents and API commands out, no I/O."""
