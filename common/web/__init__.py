"""The HTTP side every function shares: routing and the request pipeline (http), the OpenAPI
document generated from a route table (openapi) and its Swagger UI page (docs)."""
