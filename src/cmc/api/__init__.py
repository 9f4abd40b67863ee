"""The HTTP API: Litestar routes over the use cases, problem details for every error."""
