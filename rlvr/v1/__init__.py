"""Generated gRPC stubs (python -m rlvr.protogen). Do not edit."""
