-- wrk: POST /todos with a JSON body; the token comes with -H.
-- Usage: wrk ... -H "Authorization: Bearer TOKEN" -s bench/post_todo.lua URL/todos

wrk.method = "POST"
wrk.body = '{"title":"bench"}'
wrk.headers["Content-Type"] = "application/json"
