#!/usr/bin/env bash
# Seed 000's GraphQL API by curl, against `sluice serve examples/employees` (run.sh serves it and calls this).
#
#   examples/employees/api.sh [URL] [API_KEY]
#
# URL defaults to http://127.0.0.1:8000; API_KEY (role rh) to $EMPLOYEES_API_KEY, made by
#   KEY=$(sluice api-key create examples/employees --role rh)
# Each step prints its request's name and the server's JSON answer.
set -euo pipefail
url="${1:-http://127.0.0.1:8000}"
key="${2:-${EMPLOYEES_API_KEY:?give the API key of role rh as the 2nd argument or in EMPLOYEES_API_KEY}}"

# POST a GraphQL document ($1, a JSON string) with extra curl arguments (headers); print the answer.
graphql() {
    local body="$1"
    shift
    curl -sS "$url/graphql" -H 'content-type: application/json' "$@" -d "$body"
    echo
}

echo "-- employes, without credentials (role annuaire: the directory, no salaries)"
graphql '{"query": "{ employes(where: {departement: {_eq: \"Informatique\"}}, order_by: [{nom: asc}], limit: 3) { id nom prenom poste } }"}'

echo "-- create_employe, with the API key (role rh): written to MariaDB"
created=$(graphql '{"query": "mutation { create_employe(object: {nom: \"Nguyen\", prenom: \"Sarah\", email: \"sarah.nguyen@exemple.fr\", poste: \"Data analyst\", departement: \"Informatique\", salaire: \"47000.00\", date_embauche: \"2025-01-06\"}) { id nom prenom } }"}' \
    -H "x-api-key: $key")
echo "$created"
id=$(printf '%s' "$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["create_employe"]["id"])')

echo "-- employe_par_id($id): null, PostgreSQL does not have it yet"
graphql "{\"query\": \"{ employe_par_id(id: $id) { nom prenom salaire } }\"}" -H "x-api-key: $key"

echo "-- sync_employes: one pass of the sync employees, MariaDB -> PostgreSQL"
graphql '{"query": "mutation { sync_employes { mode state applied { snapshot insert update delete total } tables { source_table target_table position lag_s } } }"}' \
    -H "x-api-key: $key"

echo "-- employe_par_id($id), read from PostgreSQL"
graphql "{\"query\": \"{ employe_par_id(id: $id) { nom prenom salaire } }\"}" -H "x-api-key: $key"

echo "-- stats_employes: count and average salary by department, with a JWT (role rh)"
token=$(python3 -c 'import jwt, os, time
secret = os.environ.get("EMPLOYEES_JWT_SECRET", "change-me-this-example-secret-is-public")
print(jwt.encode({"sub": "paie", "role": "rh", "aud": "employees", "exp": int(time.time()) + 300}, secret, "HS256"))')
graphql '{"query": "{ stats_employes(group_by: [departement], limit: 10) { keys { departement } count avg { salaire } } }"}' \
    -H "authorization: Bearer $token"

echo "-- sync_employes without credentials: refused (403)"
graphql '{"query": "mutation { sync_employes { state } }"}' -w '(HTTP %{http_code})'
