# A tender by hand: token -> startInteraction -> transaction (run while `make run` serves).
CMC=${CMC:-http://127.0.0.1:8080}
TOKEN=$(curl -s -u 'pax-demo:s3cr3t!' -d grant_type=client_credentials -d scope=pos_integration \
  "$CMC/connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
SESSION=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"terminalId": "term5", "posLocationId": "loc5"}' \
  "$CMC/pos/pax/startInteraction" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["sessionId"])')
curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"sessionId": "'"$SESSION"'", "transactionId": "demo-'"$(date +%s%N)"'",
       "terminalId": "term5", "posLocationId": "loc5",
       "transactionType": "Sale", "transactionAmount": 23.47, "transactionDate": "2026-11-26T10:15:00",
       "customer": {"id": "c-42", "firstName": "Ada", "lastName": "Lovelace",
                    "contacts": [{"email": "ada@example.com", "phone": "(415) 555-0100"}]},
       "salesPerson": {"id": "s-7", "firstName": "Sam", "lastName": "Seller"},
       "products": [{"productId": "p-1", "productName": "Gummies", "manufacturer": "Acme",
                     "productCategory": "Edibles", "quantity": 2}],
       "loyalty": {"cardNumber": "L-0001"}}' \
  "$CMC/pos/pax/transaction"
echo
