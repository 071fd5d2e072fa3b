"""The data API: GraphQL and REST generated from database catalogs, with authentication and limits (docs/api)."""
