-- VIEW: one record's FIELDS and its place in line. ARGV: P, id -> {fields..., position} (state false: unknown)
local f, pos = fields(ARGV[2])
f[#FIELDS + 1] = pos
return f
