"""The gRPC edge: servicers, conversions, error mapping and the server."""
