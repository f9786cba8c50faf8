"""The bottom layer: what every room shares (the request context, the exchange and
response-writer interfaces the server implements, local replies, request targets)."""
