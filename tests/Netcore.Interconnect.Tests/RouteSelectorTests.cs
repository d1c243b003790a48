using System.Net;
using FsCheck.Fluent;
using Netcore.Interconnect.Routing;

namespace Netcore.Interconnect.Tests;

/// <summary>Which tunnels a prefix is installed through: primary/backup, ECMP, withdrawals, unusable tunnels.</summary>
public sealed class RouteSelectorTests
{
    private static readonly IPNetwork P = IPNetwork.Parse("10.20.0.0/24"), Q = IPNetwork.Parse("10.20.1.0/24");

    private static Dictionary<string, IReadOnlySet<IPNetwork>> Learned(params (string Tunnel, IPNetwork[] Prefixes)[] x) =>
        x.ToDictionary(e => e.Tunnel, e => (IReadOnlySet<IPNetwork>)e.Prefixes.ToHashSet());

    [Fact]
    public void HigherPreference_IsTheOnlyNextHop()
    {
        var s = RouteSelector.Select([new("pop1", 200, true), new("pop2", 100, true)], Learned(("pop1", [P]), ("pop2", [P])));
        Assert.Equal(["pop1"], s[P]);
    }

    [Fact]
    public void PrimaryUnusable_BackupTakesOver_AndBackWhenUsable()
    {
        var learned = Learned(("pop1", [P]), ("pop2", [P]));
        Assert.Equal(["pop2"], RouteSelector.Select([new("pop1", 200, false), new("pop2", 100, true)], learned)[P]);
        Assert.Equal(["pop1"], RouteSelector.Select([new("pop1", 200, true), new("pop2", 100, true)], learned)[P]);
    }

    [Fact]
    public void EqualPreferences_ShareThePrefix_InConfigurationOrder()
    {
        var s = RouteSelector.Select([new("b", 150, true), new("a", 150, true), new("c", 100, true)], Learned(("a", [P]), ("b", [P]), ("c", [P])));
        Assert.Equal(["b", "a"], s[P]);
    }

    [Fact]
    public void WithdrawnFromThePrimary_GoesToTheBackup_AndNowhereWhenAllWithdraw()
    {
        var t = new TunnelCandidate[] { new("pop1", 200, true), new("pop2", 100, true) };
        Assert.Equal(["pop2"], RouteSelector.Select(t, Learned(("pop1", [Q]), ("pop2", [P, Q])))[P]);
        Assert.False(RouteSelector.Select(t, Learned(("pop1", [Q]), ("pop2", [Q]))).ContainsKey(P));
    }

    [Fact]
    public void Diff_WritesChangedAndDeletesGone()
    {
        var installed = new Dictionary<IPNetwork, IReadOnlyList<string>> { [P] = ["pop1"], [Q] = ["pop1"] };
        var wanted = new Dictionary<IPNetwork, IReadOnlyList<string>> { [P] = ["pop2"] };
        var (write, delete) = RouteSelector.Diff(installed, wanted);
        Assert.Equal([P], write.Select(w => w.Key));
        Assert.Equal([Q], delete);
        Assert.Empty(RouteSelector.Diff(wanted, new Dictionary<IPNetwork, IReadOnlyList<string>> { [P] = ["pop2"] }).Write);
    }

    /// <summary>
    /// For any tunnels (preference 0-3, usable or not) and any announcements over four prefixes:
    /// a prefix is selected exactly when some usable tunnel announces it, the chosen tunnels are
    /// exactly the usable announcers of the highest preference among them, and applying the diff to
    /// any installed state gives the selection.
    /// </summary>
    [Fact]
    public void Selection_IsTheBestUsableAnnouncers_Property()
    {
        IPNetwork[] prefixes = [.. Enumerable.Range(0, 4).Select(i => IPNetwork.Parse($"10.20.{i}.0/24"))];
        var tunnelGen =
            from pref in Gen.Choose(0, 3)
            from usable in Gen.Elements(true, true, false)
            from mask in Gen.Choose(0, 15)
            select (Preference: (uint)pref, Usable: usable, Mask: mask);
        var gen = from n in Gen.Choose(0, 6)
                  from ts in Gen.ListOf(tunnelGen, n).Select(l => l.ToList())
                  from oldMask in Gen.Choose(0, 15)
                  select (Tunnels: ts, OldMask: oldMask);
        int contested = 0;
        Properties.Check(gen, input =>
        {
            var tunnels = input.Tunnels.Select((t, i) => new TunnelCandidate("t" + i, t.Preference, t.Usable)).ToList();
            var learned = input.Tunnels.Select((t, i) => ("t" + i, prefixes.Where((_, k) => (t.Mask >> k & 1) == 1).ToArray())).ToArray();
            var accepted = Learned(learned);
            var s = RouteSelector.Select(tunnels, accepted);
            foreach (var p in prefixes)
            {
                var announcers = tunnels.Where(t => t.Usable && accepted[t.Name].Contains(p)).ToList();
                if (announcers.Select(t => t.Preference).Distinct().Count() > 1)
                    Interlocked.Increment(ref contested);
                if (announcers.Count == 0)
                {
                    if (s.ContainsKey(p))
                        return false;
                    continue;
                }
                uint best = announcers.Max(t => t.Preference);
                if (!s.TryGetValue(p, out var chosen) || !chosen.SequenceEqual(announcers.Where(t => t.Preference == best).Select(t => t.Name)))
                    return false;
            }
            var installed = prefixes.Where((_, k) => (input.OldMask >> k & 1) == 1).ToDictionary(p => p, p => (IReadOnlyList<string>)["old"]);
            var (write, delete) = RouteSelector.Diff(installed, s);
            foreach (var d in delete)
                installed.Remove(d);
            foreach (var (p, names) in write)
                installed[p] = names;
            return installed.Count == s.Count && s.All(kv => installed[kv.Key].SequenceEqual(kv.Value));
        }, maxTest: 500, seed: 20261122);
        // The generator does produce the interesting case: usable announcers of different preferences.
        Assert.True(contested > 100, $"only {contested} contested prefixes were generated");
    }
}
