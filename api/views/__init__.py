"""The API's views, one module per resource; `base` binds each request to its database."""
