using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Netcore.Bgp.Platform;

/// <summary>
/// The IPv6 addresses of the interface a session's local address is on, read from the kernel's
/// /proc/net/if_inet6 in the network namespace of the session's socket (no netlink dependency):
/// what RFC 2545 3 needs to decide whether to send our link-local address as a second next hop.
/// </summary>
internal sealed partial class LocalLink
{
    // <linux/if_addr.h> IFA_F_*, <net/ipv6.h> IPV6_ADDR_* scopes as printed in if_inet6.
    private const int IFA_F_DADFAILED = 0x08, IFA_F_TENTATIVE = 0x40;
    private const int ScopeGlobal = 0x00, ScopeLink = 0x20;
    private const nuint SIOCGSKNS = 0x894C; // <linux/sockios.h>: the socket's network namespace as a new fd
    private const int CLONE_NEWNET = 0x40000000;

    private readonly List<(IPAddress Address, int PrefixLength, int Scope)> _addresses;

    private LocalLink(int ifIndex, string name, List<(IPAddress, int, int)> addresses)
    {
        IfIndex = ifIndex;
        Name = name;
        _addresses = addresses;
        LinkLocal = addresses.FirstOrDefault(a => a.Item3 == ScopeLink).Item1;
        Global = addresses.FirstOrDefault(a => a.Item3 == ScopeGlobal).Item1;
    }

    /// <summary>The interface index.</summary>
    public int IfIndex { get; }

    /// <summary>The interface name.</summary>
    public string Name { get; }

    /// <summary>The interface's first usable link-local address (fe80::/10), without scope; null when it has none.</summary>
    public IPAddress? LinkLocal { get; }

    /// <summary>The interface's first usable global-scope address; null when it has none.</summary>
    public IPAddress? Global { get; }

    /// <summary>True when <paramref name="address"/> is one of the interface's addresses.</summary>
    public bool Owns(IPAddress address) => _addresses.Exists(a => SameAddress(a.Address, address));

    /// <summary>
    /// True when <paramref name="peer"/> is directly reachable on this interface: a link-local address
    /// (scoped to it, or unscoped), or inside one of the prefixes of the interface's global addresses.
    /// </summary>
    public bool OnLink(IPAddress peer)
    {
        if (peer.AddressFamily != AddressFamily.InterNetworkV6) return false;
        if (peer.IsIPv6LinkLocal) return peer.ScopeId == 0 || peer.ScopeId == IfIndex;
        foreach (var (addr, len, scope) in _addresses)
        {
            if (scope != ScopeGlobal) continue;
            if (new BgpPrefix(addr, len).Contains(peer)) return true;
        }
        return false;
    }

    private static bool SameAddress(IPAddress a, IPAddress b)
    {
        if (a.AddressFamily != AddressFamily.InterNetworkV6 || b.AddressFamily != AddressFamily.InterNetworkV6) return false;
        Span<byte> x = stackalloc byte[16], y = stackalloc byte[16];
        a.TryWriteBytes(x, out _);
        b.TryWriteBytes(y, out _);
        return x.SequenceEqual(y);
    }

    /// <summary>
    /// The interface holding <paramref name="local"/> (a link-local address is taken by its scope id) in
    /// if_inet6 text, with its usable addresses (not tentative, DAD not failed); null when not found.
    /// </summary>
    internal static LocalLink? Parse(string ifInet6, IPAddress local)
    {
        if (local.AddressFamily != AddressFamily.InterNetworkV6 || local.IsIPv4MappedToIPv6) return null;
        var byIndex = new Dictionary<int, (string Name, List<(IPAddress, int, int)> Addresses)>();
        int found = local.IsIPv6LinkLocal && local.ScopeId != 0 ? (int)local.ScopeId : -1;
        Span<byte> raw = stackalloc byte[16];
        foreach (var line in ifInet6.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // "<32 hex address> <ifindex> <prefix length> <scope> <flags> <name>", numbers in hex (net/ipv6/addrconf.c).
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 6 || f[0].Length != 32) continue;
            for (int i = 0; i < 16; i++) raw[i] = byte.Parse(f[0].AsSpan(2 * i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var addr = new IPAddress(raw);
            int index = int.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            int len = int.Parse(f[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            int scope = int.Parse(f[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 0xF0;
            int flags = int.Parse(f[4], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (!byIndex.TryGetValue(index, out var entry))
                byIndex[index] = entry = (f[5], []);
            if (found < 0 && SameAddress(addr, local)) found = index;
            // A tentative address cannot receive yet, one whose DAD failed never will: not a next hop.
            if ((flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) != 0) continue;
            entry.Addresses.Add((addr, len, scope));
        }
        return found >= 0 && byIndex.TryGetValue(found, out var hit) ? new LocalLink(found, hit.Name, hit.Addresses) : null;
    }

    /// <summary>
    /// The interface of <paramref name="local"/> as seen from <paramref name="socket"/>'s network namespace
    /// (which may differ from the process's when a socket factory created it elsewhere: SIOCGSKNS, then a
    /// short-lived thread enters that namespace to read its if_inet6). Null when it cannot be read.
    /// </summary>
    public static LocalLink? Find(Socket socket, IPAddress local)
    {
        if (!OperatingSystem.IsLinux() || local.AddressFamily != AddressFamily.InterNetworkV6 || local.IsIPv4MappedToIPv6) return null;
        try
        {
            return Parse(ReadIfInet6(socket) ?? "", local);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or ObjectDisposedException)
        {
            return null;
        }
    }

    private static string? ReadIfInet6(Socket socket)
    {
        const string Own = "/proc/thread-self/net/if_inet6";
        int ns = ioctl((int)socket.SafeHandle.DangerousGetHandle(), SIOCGSKNS);
        if (ns < 0) return File.ReadAllText(Own); // kernel before 4.9: the caller's namespace
        try
        {
            string? mine = new FileInfo("/proc/thread-self/ns/net").LinkTarget;
            string? its = new FileInfo($"/proc/thread-self/fd/{ns}").LinkTarget;
            if (mine is not null && mine == its) return File.ReadAllText(Own);
            string? text = null;
            var t = new Thread(() =>
            {
                // The thread ends right after, so its changed namespace never serves other work.
                if (setns(ns, CLONE_NEWNET) != 0) return; // no CAP_SYS_ADMIN: no link-local next hop
                try { text = File.ReadAllText(Own); }
                catch (IOException) { }
            });
            t.Start();
            t.Join();
            return text;
        }
        finally
        {
            close(ns);
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
