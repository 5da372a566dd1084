-- wrk request for RFC 7662 introspection: POST, HTTP Basic client authentication, a form body
-- carrying the token. The request is built once (no request() or response() function), so wrk
-- sends it from its fast path exactly as it sends a plain GET.
--
--   TESSERA_BENCH_TOKEN=eyJ... wrk -t2 -c64 -d5s -s benches/scripts/wrk-introspect.lua \
--     http://127.0.0.1:PORT/introspect
--
-- Environment: TESSERA_BENCH_TOKEN (required), the token to introspect; TESSERA_BENCH_CLIENT_ID
-- and TESSERA_BENCH_CLIENT_SECRET, the introspection client (default `dev` / `dev-secret`, the
-- client `tessera serve --dev` knows).

local token = os.getenv("TESSERA_BENCH_TOKEN")
if token == nil or token == "" then
  error("wrk-introspect.lua: set TESSERA_BENCH_TOKEN to the token to introspect")
end
if not token:match("^[%w%-_%.]+$") then
  -- A compact JWS is base64url and dots: nothing to escape in a form body.
  error("wrk-introspect.lua: TESSERA_BENCH_TOKEN is not a compact JWS")
end
local client_id = os.getenv("TESSERA_BENCH_CLIENT_ID") or "dev"
local client_secret = os.getenv("TESSERA_BENCH_CLIENT_SECRET") or "dev-secret"

-- RFC 4648 base64 with padding, for the Basic credentials (LuaJIT and Lua 5.1: no bit operators).
local function base64(input)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local out = {}
  for i = 1, #input, 3 do
    local a, b, c = input:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local s1 = math.floor(n / 262144) % 64
    local s2 = math.floor(n / 4096) % 64
    local s3 = math.floor(n / 64) % 64
    local s4 = n % 64
    out[#out + 1] = alphabet:sub(s1 + 1, s1 + 1) .. alphabet:sub(s2 + 1, s2 + 1)
      .. (b and alphabet:sub(s3 + 1, s3 + 1) or "=")
      .. (c and alphabet:sub(s4 + 1, s4 + 1) or "=")
  end
  return table.concat(out)
end

wrk.method = "POST"
wrk.body = "token=" .. token
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. base64(client_id .. ":" .. client_secret)
