"""The CryptoMate platform emulator: API subset, access levels, rate limits, webhook sender."""
