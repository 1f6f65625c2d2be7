-- The environment of a pyxos script: Redis 7.0's Lua API, made deterministic.
--
-- Run once in every fresh Lua state before the script (see lua_engine.py), with the
-- Python helpers as arguments. Everything a script could use to see the world outside the
-- log is removed or replaced: no os, io, debug or print; math.random draws from a
-- generator seeded by the log position; tostring does not show memory addresses; every
-- Lua instruction counts against a budget that ends the script, even inside pcall or a
-- coroutine.
--
-- redis.call, redis.pcall, cjson and bit are Python callables, which Lua runs as C
-- functions: `return redis.call(...)` keeps the script's frame, so errors name its line.
-- They report errors by raising Python exceptions; py_unwrap turns one back into what a
-- Lua script sees (a {err=...} table, or a message).
local py_call, py_pcall, py_unwrap, py_redis, py_random, py_bit, py_json,
      budget, keys, argv = ...

local dbg = debug
local prelude = dbg.getinfo(1, 'S').source
local error, type, select, raw_tostring = error, type, select, tostring
local setmetatable, getmetatable, rawget, rawset = setmetatable, getmetatable, rawget, rawset
local unpack, format, floor = unpack, string.format, math.floor
local co_create, co_resume = coroutine.create, coroutine.resume
local real_pcall, real_xpcall, real_setfenv, globals = pcall, xpcall, setfenv, _G

python = nil
io, os, debug, print, require, module, package = nil, nil, nil, nil, nil, nil, nil
dofile, loadfile, setfenv, getfenv, newproxy = nil, nil, nil, nil, nil

local function pack(...) return {n = select('#', ...), ...} end

-- The instruction budget: the hook runs every 1000 instructions, in every coroutine.
local KILLED = {err = 'ERR script killed: it ran past ' .. budget .. ' Lua instructions'}
local ticks = budget / 1000
local killed = false
local function hook()
  ticks = ticks - 1
  if ticks <= 0 then
    killed = true
    error(KILLED)
  end
end
dbg.sethook(hook, '', 1000)

-- What a caught error looks like to the script, as with Redis's own pcall: an error table
-- becomes its message, and so does a Python helper's error.
local function caught(r)
  if killed then error(KILLED) end
  if not r[1] then
    local e = r[2]
    if type(e) == 'userdata' then
      local unwrapped = py_unwrap(e, false)
      if unwrapped ~= nil then e = unwrapped end
    end
    if type(e) == 'table' and type(rawget(e, 'err')) == 'string' then e = rawget(e, 'err') end
    r[2] = e
  end
  return unpack(r, 1, r.n)
end
local after = caught
pcall = function(...) return caught(pack(real_pcall(...))) end
xpcall = function(f, handler, ...)
  return after(pack(real_xpcall(f, handler, ...)))
end
coroutine.create = function(f)
  local co = co_create(f)
  dbg.sethook(co, hook, '', 1000)
  return co
end
coroutine.resume = function(...) return after(pack(co_resume(...))) end
coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...)
    local r = pack(co_resume(co, ...))
    if killed then error(KILLED) end
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

-- tostring without addresses: tables, functions and coroutines are numbered in the order
-- they are first shown, which is the same on every replica.
local shown, next_id = setmetatable({}, {__mode = 'k'}), 0
tostring = function(v)
  local t = type(v)
  if t == 'table' or t == 'function' or t == 'thread' or t == 'userdata' then
    local mt = t == 'table' and getmetatable(v)
    if mt and rawget(mt, '__tostring') then return mt.__tostring(v) end
    local id = shown[v]
    if not id then
      next_id = next_id + 1
      id = next_id
      shown[v] = id
    end
    return format('%s: 0x%08x', t, id)
  end
  return raw_tostring(v)
end

-- Lua 5.1's math.random, over a generator seeded by the log position.
math.random = function(...)
  local n, r = select('#', ...), py_random(0)
  if n == 0 then return r end
  local m = (...)
  if type(m) ~= 'number' then error("bad argument #1 to 'random' (number expected)", 2) end
  if n == 1 then
    m = m - m % 1
    if m < 1 then error("bad argument #1 to 'random' (interval is empty)", 2) end
    return floor(r * m) + 1
  end
  if n > 2 then error('wrong number of arguments', 2) end
  local u = select(2, ...)
  if type(u) ~= 'number' then error("bad argument #2 to 'random' (number expected)", 2) end
  m, u = m - m % 1, u - u % 1
  if m > u then error("bad argument #2 to 'random' (interval is empty)", 2) end
  return floor(r * (u - m + 1)) + m
end
math.randomseed = function(seed) py_random(-1, seed) end

-- The redis library.
local function error_table(msg)
  -- Redis's luaPushErrorBuff: "-CODE text" keeps its code, anything else gets ERR.
  if type(msg) ~= 'string' then msg = raw_tostring(msg) end
  if msg:sub(1, 1) ~= '-' then msg = '-' .. msg end
  local space = msg:find(' ', 1, true)
  local code, text
  if space then
    code, text = msg:sub(2, space - 1), msg:sub(space + 1)
  else
    code, text = 'ERR', msg:sub(2)
  end
  text = text:gsub('[\r\n]+$', '')
  return {err = code .. ' ' .. text}
end

redis = {
  call = py_call,
  pcall = py_pcall,
  error_reply = function(msg) return error_table(msg) end,
  status_reply = function(msg) return {ok = msg} end,
  sha1hex = py_redis.sha1hex,
  log = py_redis.log,
  setresp = py_redis.setresp,
  set_repl = py_redis.set_repl,
  replicate_commands = function() return true end,
  breakpoint = function() return false end,
  debug = function() end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
  REDIS_VERSION = '7.0.15', REDIS_VERSION_NUM = 0x07000f,
}
bit = {}
for _, name in ipairs({'tobit', 'tohex', 'bnot', 'band', 'bor', 'bxor', 'lshift', 'rshift',
                       'arshift', 'rol', 'ror', 'bswap'}) do
  bit[name] = py_bit[name]
end
cjson = {encode = py_json.encode, decode = py_json.decode, null = py_json.null}

-- Errors become tables naming where they happened: the first frame of the script itself.
function __redis__err__handler(e)
  local level, info = 2, nil
  repeat
    info = dbg.getinfo(level, 'nSl')
    level = level + 1
  until not info or (info.what ~= 'C' and info.what ~= 'tail' and info.source ~= prelude)
  if type(e) == 'userdata' then
    local unwrapped = py_unwrap(e, true)
    if type(unwrapped) == 'string' and info then
      unwrapped = info.short_src .. ':' .. info.currentline .. ': ' .. unwrapped
    end
    if unwrapped ~= nil then e = unwrapped end
  end
  if type(e) ~= 'table' then e = {err = 'ERR ' .. raw_tostring(e)} end
  if info then
    e.source = info.source
    e.line = info.currentline
  end
  return e
end

KEYS, ARGV = keys, argv

-- The script's globals are read-only: reading an unknown one or creating one is an error,
-- as in Redis. They live in an environment of the script's own, over the real globals
-- (which the Lua/Python bridge itself needs to leave alone).
local env = setmetatable({}, {
  __index = function(_, k)
    local v = globals[k]
    if v == nil then
      error("Script attempted to access nonexistent global variable '" .. raw_tostring(k) .. "'", 2)
    end
    return v
  end,
  __newindex = function()
    error('Attempt to modify a readonly table', 2)
  end,
})
rawset(env, '_G', env)

return {run = function(f)
  real_setfenv(f, env)
  return real_xpcall(f, __redis__err__handler)
end}
