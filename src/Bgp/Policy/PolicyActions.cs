using System.Collections.Immutable;
using System.Net;

namespace Netcore.Bgp.Policy;

/// <summary>
/// The attribute changes of one policy term, applied together: every field is computed first and
/// a new <see cref="BgpPathAttributes"/> is built only when something actually differs, so a route
/// the term leaves as it is keeps its instance (and costs no allocation).
/// Order inside a term: removals, then replacements, then additions, then the AS-path prepend.
/// </summary>
internal sealed class AttributeEdit
{
    public uint? LocalPreference;
    public bool SetMed;
    public uint? Med;              // with SetMed: null clears
    public BgpOrigin? Origin;
    public NextHopEdit NextHop;
    public IPAddress? NextHopAddress;
    public bool ClearCommunities, ClearLarge, ClearExtended;
    public CommunityPattern[] RemoveCommunities = [];
    public LargeCommunityPattern[] RemoveLarge = [];
    public BgpExtendedCommunity[] RemoveExtended = [];
    public BgpCommunity[] AddCommunities = [];
    public BgpLargeCommunity[] AddLarge = [];
    public BgpExtendedCommunity[] AddExtended = [];
    public int PrependCount;
    public uint? PrependAs;        // null: the session's local AS

    /// <summary>A copy for a compiled term, so that a builder kept by the caller cannot change a built policy.</summary>
    public AttributeEdit Snapshot() => (AttributeEdit)MemberwiseClone();

    public bool IsEmpty =>
        LocalPreference is null && !SetMed && Origin is null && NextHop == NextHopEdit.None && !ClearCommunities && !ClearLarge && !ClearExtended
        && RemoveCommunities.Length == 0 && RemoveLarge.Length == 0 && RemoveExtended.Length == 0
        && AddCommunities.Length == 0 && AddLarge.Length == 0 && AddExtended.Length == 0 && PrependCount == 0;

    public BgpPathAttributes Apply(BgpPathAttributes a, in BgpPolicyContext context)
    {
        bool changed = false;
        var lp = a.LocalPreference;
        if (LocalPreference is { } setLp && lp != setLp) { lp = setLp; changed = true; }
        var med = a.Med;
        if (SetMed && med != Med) { med = Med; changed = true; }
        var origin = a.Origin;
        if (Origin is { } o && o != origin) { origin = o; changed = true; }
        var nh = a.NextHop;
        switch (NextHop)
        {
            case NextHopEdit.Address when !Equals(nh, NextHopAddress):
                nh = NextHopAddress;
                changed = true;
                break;
            case NextHopEdit.Self when nh is not null:
                nh = null; // the session writes its own address for a null next hop
                changed = true;
                break;
            case NextHopEdit.Peer when !Equals(nh, context.PeerAddress):
                nh = context.PeerAddress;
                changed = true;
                break;
        }
        var comm = EditSet(a.Communities, ClearCommunities, RemoveCommunities, static (p, c) => p.Matches(c), AddCommunities, ref changed);
        var large = EditSet(a.LargeCommunities, ClearLarge, RemoveLarge, static (p, c) => p.Matches(c), AddLarge, ref changed);
        var ext = EditSet(a.ExtendedCommunities, ClearExtended, RemoveExtended, static (p, c) => p == c, AddExtended, ref changed);
        var path = a.AsPath;
        if (PrependCount > 0)
        {
            path = path.Prepend(PrependAs ?? context.LocalAs, PrependCount);
            changed = true;
        }
        if (!changed)
            return a;
        return a with
        {
            LocalPreference = lp,
            Med = med,
            Origin = origin,
            NextHop = nh,
            Communities = comm,
            LargeCommunities = large,
            ExtendedCommunities = ext,
            AsPath = path,
        };
    }

    /// <summary>Removes what the patterns (or clear) select, then appends the additions not yet present; returns the input when nothing changes.</summary>
    private static ImmutableArray<T> EditSet<T, TPattern>(ImmutableArray<T> have, bool clear, TPattern[] remove, Func<TPattern, T, bool> matches, T[] add, ref bool changed)
        where T : IEquatable<T>
    {
        if (!clear && remove.Length == 0 && add.Length == 0)
            return have;
        bool removeAny = false;
        if (clear)
            removeAny = have.Length > 0;
        else
            foreach (var c in have)
                if (IsRemoved(c, remove, matches)) { removeAny = true; break; }
        bool addAny = false;
        foreach (var x in add)
            if (removeAny || !have.AsSpan().Contains(x)) { addAny = true; break; }
        if (!removeAny && !addAny)
            return have;
        var b = ImmutableArray.CreateBuilder<T>(have.Length + add.Length);
        if (!clear)
            foreach (var c in have)
                if (!IsRemoved(c, remove, matches))
                    b.Add(c);
        foreach (var x in add)
            if (!b.Contains(x))
                b.Add(x);
        // Removing and re-adding the same values gives the same sequence: no change.
        if (b.Count == have.Length && b.SequenceEqual(have))
            return have;
        changed = true;
        return b.DrainToImmutable();
    }

    private static bool IsRemoved<T, TPattern>(T c, TPattern[] remove, Func<TPattern, T, bool> matches)
    {
        foreach (var p in remove)
            if (matches(p, c))
                return true;
        return false;
    }
}

internal enum NextHopEdit : byte
{
    None,
    Address,
    Self,
    Peer,
}

/// <summary>What a term decides after its actions.</summary>
internal enum TermVerdict : byte
{
    /// <summary>Go on with the next term (modifications kept).</summary>
    Next,
    Accept,
    Reject,
}

/// <summary>A compiled term: a condition, an edit, a verdict.</summary>
internal sealed record PolicyTerm(string Name, PolicyCondition Condition, AttributeEdit? Edit, TermVerdict Verdict);
