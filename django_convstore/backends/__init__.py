"""Store backends. Each module holds one backend class; ``base`` holds the contract."""
