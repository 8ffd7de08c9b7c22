import { BlockList, isIP } from 'node:net';

/** Never a destination, whatever EXECD_NOTIFY_ALLOW says: "this host" (0.0.0.0, ::), multicast, broadcast. */
const NEVER = new BlockList();
NEVER.addSubnet('0.0.0.0', 8, 'ipv4');
NEVER.addSubnet('224.0.0.0', 4, 'ipv4');
NEVER.addAddress('255.255.255.255', 'ipv4');
NEVER.addAddress('::', 'ipv6');
NEVER.addSubnet('ff00::', 8, 'ipv6');

/**
 * Addresses a callback reaches only when its host is listed by name in EXECD_NOTIFY_ALLOW (not through a
 * `*.suffix` entry): loopback, link-local (169.254.169.254 is the cloud metadata service), private and
 * shared (CGNAT) ranges, reserved, documentation and benchmarking ranges, and their IPv6 counterparts.
 */
const INTERNAL = new BlockList();
for (const [net, bits] of [
  ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24],
  ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['240.0.0.0', 4],
] as const) INTERNAL.addSubnet(net, bits, 'ipv4');
INTERNAL.addAddress('::1', 'ipv6');
for (const [net, bits] of [['fe80::', 10], ['fc00::', 7], ['fec0::', 10], ['2001:db8::', 32], ['100::', 64]] as const) INTERNAL.addSubnet(net, bits, 'ipv6');

/** An IPv4 address carried in IPv6 (::ffff:a.b.c.d mapped, 64:ff9b::/96 NAT64, ::a.b.c.d compatible), else null. */
function embeddedV4(address: string): string | null {
  const m = /^(?:::ffff:|64:ff9b::|::)((?:\d{1,3}\.){3}\d{1,3})$/i.exec(address);
  if (m) return m[1]!;
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return null;
  const hi = parseInt(hex[1]!, 16);
  const lo = parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

export type AddressClass = 'public' | 'internal' | 'never';

/** How a resolved address may be used: freely (public), only for a host listed by name (internal), or not at all. */
export function classifyAddress(address: string): AddressClass {
  const bare = address.startsWith('[') ? address.slice(1, -1) : address;
  const family = isIP(bare);
  if (family === 0) return 'never';
  if (family === 6) {
    const v4 = embeddedV4(bare);
    if (v4 !== null) return classifyAddress(v4);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (NEVER.check(bare, type)) return 'never';
  return INTERNAL.check(bare, type) ? 'internal' : 'public';
}
