"""The read API's routers, one module per resource."""
