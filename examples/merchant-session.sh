# The merchant API by hand: token -> pull -> edit -> draft -> simulate -> activate (while `make run` serves).
CMC=${CMC:-http://127.0.0.1:8080}
API=$CMC/v1/pos/pax/companies/comp5
WORK=$(mktemp -d)
TOKEN=$(curl -s -u 'greenleaf-api:m3rch!' -d grant_type=client_credentials -d scope=merchant \
  "$CMC/connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -s -H "Authorization: Bearer $TOKEN" "$API/marketing" -o "$WORK/active.json"
ACTIVE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["version"])' "$WORK/active.json")
python3 -c 'import json,sys
doc = json.load(open(sys.argv[1]))["data"]["document"]
doc["rules"][0]["when"]["all"][0]["amount"] = {"between": ["15", "80"]}   # a wider coupon band
print(json.dumps({"document": doc, "note": "coupon up to 80"}))' "$WORK/active.json" > "$WORK/draft.json"
DRAFT=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: draft-$(date +%s%N)" -d @"$WORK/draft.json" "$API/marketing/versions" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["version"])')
curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}' \
  "$API/marketing/versions/$DRAFT/simulate" | python3 -c 'import json,sys
result = json.load(sys.stdin)["data"]
print(result["sales"], "sales replayed,", result["differing"], "with another outcome")
for rule in result["rules"]:
    print(rule["rule"], "firings:", rule["version"]["firings"], "vs", rule["active"]["firings"])'
curl -s -X POST -H "Authorization: Bearer $TOKEN" -H "If-Match: \"$ACTIVE\"" "$API/marketing/versions/$DRAFT/activate"
echo
