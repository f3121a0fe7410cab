"""HTTP views: thin layers that validate, call one service function, respond."""
