using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Rule actions (linux/fib_rules.h FR_ACT_*).</summary>
public enum RuleAction
{
    /// <summary>FR_ACT_TO_TBL: look up in <see cref="Rule.Table"/>.</summary>
    ToTable = 1,
    /// <summary>FR_ACT_GOTO.</summary>
    Goto = 2,
    /// <summary>FR_ACT_NOP.</summary>
    Nop = 3,
    /// <summary>FR_ACT_BLACKHOLE.</summary>
    Blackhole = 6,
    /// <summary>FR_ACT_UNREACHABLE.</summary>
    Unreachable = 7,
    /// <summary>FR_ACT_PROHIBIT.</summary>
    Prohibit = 8,
}

/// <summary>A policy routing rule (struct fib_rule_hdr + FRA_* attributes), as `ip rule`.</summary>
public sealed record Rule
{
    /// <summary>Address family. Default IPv4.</summary>
    public AddressFamily Family { get; init; } = AddressFamily.InterNetwork;

    /// <summary>FRA_PRIORITY; null lets the kernel pick on add.</summary>
    public uint? Priority { get; init; }

    /// <summary>Source prefix (FRA_SRC).</summary>
    public IPNetwork? From { get; init; }

    /// <summary>Destination prefix (FRA_DST).</summary>
    public IPNetwork? To { get; init; }

    /// <summary>FRA_FWMARK.</summary>
    public uint? FwMark { get; init; }

    /// <summary>FRA_FWMASK.</summary>
    public uint? FwMask { get; init; }

    /// <summary>FRA_IIFNAME.</summary>
    public string? InputInterface { get; init; }

    /// <summary>FRA_OIFNAME.</summary>
    public string? OutputInterface { get; init; }

    /// <summary>Lookup table (FRA_TABLE). Default main.</summary>
    public uint Table { get; init; } = RouteTables.Main;

    /// <summary>FRA_L3MDEV: look up in the table of the VRF the packet came through.</summary>
    public bool L3mdev { get; init; }

    /// <summary>Action. Default lookup in <see cref="Table"/>.</summary>
    public RuleAction Action { get; init; } = RuleAction.ToTable;

    /// <summary>FRA_PROTOCOL.</summary>
    public RouteProtocol Protocol { get; init; }

    /// <summary>Attributes this version does not decode, kept raw.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes { get; init; } = [];
}

internal static class RuleCodec
{
    public static void Write(NetlinkWriter w, Rule r)
    {
        byte fam = Af.Of(r.Family);
        if (fam == Af.Unspec)
            throw new ArgumentException("a rule's family is IPv4 or IPv6", nameof(r));
        w.Struct(new fib_rule_hdr
        {
            family = fam,
            dst_len = (byte)(r.To?.PrefixLength ?? 0),
            src_len = (byte)(r.From?.PrefixLength ?? 0),
            table = r.L3mdev ? (byte)0 : r.Table < 256 ? (byte)r.Table : (byte)0,
            action = (byte)r.Action,
        });
        if (r.Priority is uint p) w.U32(Nl.FRA_PRIORITY, p);
        if (r.From is { } from) w.Address(Nl.FRA_SRC, from.BaseAddress);
        if (r.To is { } to) w.Address(Nl.FRA_DST, to.BaseAddress);
        if (r.FwMark is uint mark) w.U32(Nl.FRA_FWMARK, mark);
        if (r.FwMask is uint mask) w.U32(Nl.FRA_FWMASK, mask);
        if (r.InputInterface is not null) w.String(Nl.FRA_IIFNAME, r.InputInterface);
        if (r.OutputInterface is not null) w.String(Nl.FRA_OIFNAME, r.OutputInterface);
        // net/core/fib_rules.c fib_nl2rule: FRA_L3MDEV excludes a table.
        if (r.L3mdev) w.U8(Nl.FRA_L3MDEV, 1);
        else if (r.Action == RuleAction.ToTable) w.U32(Nl.FRA_TABLE, r.Table);
        if (r.Protocol != 0) w.U8(Nl.FRA_PROTOCOL, (byte)r.Protocol);
    }

    public static bool TryParse(in NetlinkMessage m, out Rule rule)
    {
        rule = null!;
        if (m.Type != Nl.RTM_NEWRULE && m.Type != Nl.RTM_DELRULE)
            return false;
        fib_rule_hdr h = m.Header<fib_rule_hdr>();
        if (h.family != Af.Inet && h.family != Af.Inet6)
            return false;
        uint? prio = null, mark = null, mask = null;
        IPAddress? src = null, dst = null;
        string? iif = null, oif = null;
        uint table = h.table;
        bool l3 = false;
        byte proto = 0;
        List<RawAttribute>? unknown = null;
        var a = m.Attributes(Unsafe.SizeOf<fib_rule_hdr>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.FRA_PRIORITY: prio = Attr.U32(v); break;
                case Nl.FRA_SRC: src = Attr.Address(v); break;
                case Nl.FRA_DST: dst = Attr.Address(v); break;
                case Nl.FRA_FWMARK: mark = Attr.U32(v); break;
                case Nl.FRA_FWMASK: mask = Attr.U32(v); break;
                case Nl.FRA_IIFNAME: iif = Attr.String(v); break;
                case Nl.FRA_OIFNAME: oif = Attr.String(v); break;
                case Nl.FRA_TABLE: table = Attr.U32(v); break;
                case Nl.FRA_L3MDEV: l3 = Attr.U8(v) != 0; break;
                case Nl.FRA_PROTOCOL: proto = Attr.U8(v); break;
                case 14 /* FRA_SUPPRESS_PREFIXLEN */:
                case 13 /* FRA_SUPPRESS_IFGROUP */:
                    break;
                default:
                    (unknown ??= []).Add(new RawAttribute(t, v.ToArray()));
                    break;
            }
        }
        int max = h.family == Af.Inet ? 32 : 128;
        if (h.src_len > max || h.dst_len > max)
            NetlinkFormatException.Throw("fib_rule_hdr prefix length too long for the family");
        if ((src is not null && (src.AddressFamily != Af.To(h.family) || IpBits.From(src).HasHostBits(h.src_len)))
            || (dst is not null && (dst.AddressFamily != Af.To(h.family) || IpBits.From(dst).HasHostBits(h.dst_len))))
            NetlinkFormatException.Throw("FRA_SRC/FRA_DST does not match the family and prefix length");
        rule = new Rule
        {
            Family = Af.To(h.family),
            Priority = prio,
            From = src is null ? null : new IPNetwork(src, h.src_len),
            To = dst is null ? null : new IPNetwork(dst, h.dst_len),
            FwMark = mark,
            FwMask = mask,
            InputInterface = iif,
            OutputInterface = oif,
            Table = table,
            L3mdev = l3,
            Action = (RuleAction)h.action,
            Protocol = (RouteProtocol)proto,
            UnknownAttributes = unknown ?? (IReadOnlyList<RawAttribute>)[],
        };
        return true;
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>Adds a rule (`ip rule add`).</summary>
    public ValueTask AddRuleAsync(Rule rule, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(rule);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_NEWRULE, Nl.NLM_F_CREATE | Nl.NLM_F_EXCL, $"RTM_NEWRULE pref {rule.Priority} table {rule.Table}", w => RuleCodec.Write(w, rule));
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes the first rule matching the given fields (`ip rule del`).</summary>
    public ValueTask DeleteRuleAsync(Rule rule, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(rule);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELRULE, 0, $"RTM_DELRULE pref {rule.Priority}", w => RuleCodec.Write(w, rule));
        return ValueTask.CompletedTask;
    }

    /// <summary>Rules of a family (RTM_GETRULE dump).</summary>
    public IAsyncEnumerable<Rule> GetRulesAsync(AddressFamily family = AddressFamily.InterNetwork, CancellationToken cancellationToken = default) =>
        DumpAsync<Rule>(Nl.RTM_GETRULE, "RTM_GETRULE dump", w => w.Struct(new fib_rule_hdr { family = Af.Of(family) }), RuleCodec.TryParse, cancellationToken);
}
