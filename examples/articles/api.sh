#!/usr/bin/env bash
# Seed 001's API by curl, against `sluice serve examples/articles` (run.sh serves it and calls this):
# REST CRUD on base A's articles, the same over GraphQL, the gateway route, /health and /metrics.
#
#   examples/articles/api.sh [URL] [API_KEY]
#
# URL defaults to http://127.0.0.1:8000; API_KEY (role redacteur) to $ARTICLES_API_KEY, made by
#   KEY=$(sluice api-key create examples/articles --role redacteur --owner Emma)
# Each step prints its request and the server's answer (status line first for REST).
set -euo pipefail
url="${1:-http://127.0.0.1:8000}"
key="${2:-${ARTICLES_API_KEY:?give the API key of role redacteur as the 2nd argument or in ARTICLES_API_KEY}}"

# curl with the status on a line of its own after the body.
call() {
    curl -sS -w '\n(HTTP %{http_code})\n' "$@"
}

# POST a GraphQL document ($1, a JSON string) with the API key.
graphql() {
    curl -sS "$url/graphql" -H 'content-type: application/json' -H "x-api-key: $key" -d "$1"
    echo
}

echo "-- GET /health"
call "$url/health"

echo "-- GET /rest/articles, without credentials (role lecteur: published articles only)"
call "$url/rest/articles?select=id,title,author&order=id.asc"

echo "-- GET /rest/articles/1"
call "$url/rest/articles/1?select=id,title,content,tags"

echo "-- POST /rest/articles (API key, role redacteur: the author is the key's owner)"
created=$(curl -sS "$url/rest/articles?select=id,title,author" -H "x-api-key: $key" \
    -H 'content-type: application/json' -H 'Prefer: return=representation' \
    -d '{"title": "Une API sans code", "content": "REST et GraphQL générés depuis les tables.", "tags": ["api"], "published": true}')
echo "$created"
id=$(printf '%s' "$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')

echo "-- PUT /rest/articles/$id"
call -X PUT "$url/rest/articles/$id?select=id,title,views" -H "x-api-key: $key" -H 'content-type: application/json' \
    -d '{"title": "Une API sans une ligne de code", "views": 10}'

echo "-- DELETE /rest/articles/1: not the key owner's article, so no row for this role (404)"
call -X DELETE "$url/rest/articles/1" -H "x-api-key: $key"

echo "-- GraphQL getArticles"
graphql '{"query": "{ getArticles(where: {published: {_eq: true}}, order_by: [{id: asc}], limit: 3) { id title author } }"}'

echo "-- GraphQL getArticle(id: $id)"
graphql "{\"query\": \"{ getArticle(id: $id) { id title author views } }\"}"

echo "-- GraphQL createArticle"
made=$(graphql '{"query": "mutation { createArticle(object: {title: \"GraphQL et REST\", content: \"Deux vues des mêmes tables.\", published: false}) { id title author } }"}')
echo "$made"
other=$(printf '%s' "$made" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["createArticle"]["id"])')

echo "-- GraphQL updateArticle(pk_columns: {id: $other})"
graphql "{\"query\": \"mutation { updateArticle(pk_columns: {id: $other}, _set: {published: true}) { id title published } }\"}"

echo "-- GraphQL deleteArticle(id: $other)"
graphql "{\"query\": \"mutation { deleteArticle(id: $other) { id title } }\"}"

echo "-- GET /gateway/sluice/syncs: the gateway route to the control API, with the API key (name and state shown)"
call "$url/gateway/sluice/syncs" -H "x-api-key: $key" | python3 -c 'import json, sys
body, status = sys.stdin.read().rsplit("\n(HTTP", 1)
print(json.dumps([{k: s[k] for k in ("name", "state")} for s in json.loads(body)["syncs"]]), "(HTTP" + status.rstrip())'

echo "-- GET /gateway/sluice/syncs without credentials: refused"
call "$url/gateway/sluice/syncs"

echo "-- GET /metrics: the data API's requests"
curl -sS "$url/metrics" | grep -E '^sluice_api_requests_total\{api="(rest|graphql)",operation="([A-Z]+ articles|[a-zA-Z]+Articles?)"' | sort
