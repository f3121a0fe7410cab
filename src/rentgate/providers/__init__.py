"""Provider clients that fulfil orders, and the registry that picks them."""
