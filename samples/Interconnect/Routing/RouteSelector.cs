using System.Net;

namespace Netcore.Interconnect.Routing;

/// <summary>A tunnel as route selection sees it.</summary>
/// <param name="Name">Tunnel name.</param>
/// <param name="Preference">Higher wins; equal preferences share (ECMP).</param>
/// <param name="Usable">The BGP session is Established and, when BFD runs on it, BFD is Up (RFC 5882 4.3: a BFD Down takes the session's routes away at once).</param>
internal sealed record TunnelCandidate(string Name, uint Preference, bool Usable);

/// <summary>
/// Chooses the tunnels each prefix is installed through: among the usable tunnels that announce
/// the prefix (and whose import filter accepted it), those of the highest preference, in
/// configuration order. One tunnel is a primary route; several are an ECMP route; none leaves the
/// prefix out of the FIB. The AS path and the other BGP attributes are not compared: every PoP is
/// a router of the same provider, and the operator states which tunnel is preferred.
/// </summary>
internal static class RouteSelector
{
    /// <summary>The chosen tunnels per prefix (tunnels in the order of <paramref name="tunnels"/>).</summary>
    /// <param name="tunnels">Tunnels in configuration order.</param>
    /// <param name="accepted">Prefixes each tunnel's peer announced and the import filter accepted.</param>
    public static Dictionary<IPNetwork, IReadOnlyList<string>> Select(
        IReadOnlyList<TunnelCandidate> tunnels, IReadOnlyDictionary<string, IReadOnlySet<IPNetwork>> accepted)
    {
        var best = new Dictionary<IPNetwork, (uint Preference, List<string> Tunnels)>();
        foreach (var t in tunnels)
        {
            if (!t.Usable || !accepted.TryGetValue(t.Name, out var prefixes))
                continue;
            foreach (var p in prefixes)
            {
                if (!best.TryGetValue(p, out var b) || t.Preference > b.Preference)
                    best[p] = (t.Preference, [t.Name]);
                else if (t.Preference == b.Preference)
                    b.Tunnels.Add(t.Name);
            }
        }
        return best.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<string>)kv.Value.Tunnels);
    }

    /// <summary>What changed between two selections: prefixes to write (new or different tunnels) and prefixes to delete.</summary>
    public static (List<KeyValuePair<IPNetwork, IReadOnlyList<string>>> Write, List<IPNetwork> Delete) Diff(
        IReadOnlyDictionary<IPNetwork, IReadOnlyList<string>> installed, IReadOnlyDictionary<IPNetwork, IReadOnlyList<string>> wanted)
    {
        var write = wanted.Where(kv => !installed.TryGetValue(kv.Key, out var have) || !have.SequenceEqual(kv.Value)).ToList();
        var delete = installed.Keys.Where(p => !wanted.ContainsKey(p)).ToList();
        return (write, delete);
    }
}
