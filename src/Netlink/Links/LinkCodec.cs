using System.Net.NetworkInformation;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Encodes link requests and decodes RTM_NEWLINK messages.</summary>
internal static class LinkCodec
{
    public static bool TryParse(in NetlinkMessage m, out Link link)
    {
        if (m.Type != Nl.RTM_NEWLINK && m.Type != Nl.RTM_DELLINK)
        {
            link = null!;
            return false;
        }
        ifinfomsg h = m.Header<ifinfomsg>();
        string name = "";
        int mtu = 0, txq = 0;
        int? master = null, parent = null, nsid = null;
        PhysicalAddress? addr = null;
        string? kind = null, portKind = null, alias = null;
        var oper = LinkOperState.Unknown;
        XdpStatus? xdp = null;
        List<RawAttribute>? unknown = null, infoData = null;
        var a = m.Attributes(System.Runtime.CompilerServices.Unsafe.SizeOf<ifinfomsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.IFLA_IFNAME: name = Attr.String(v); break;
                case Nl.IFLA_MTU: mtu = (int)Attr.U32(v); break;
                case Nl.IFLA_TXQLEN: txq = (int)Attr.U32(v); break;
                case Nl.IFLA_MASTER: master = (int)Attr.U32(v); break;
                case Nl.IFLA_LINK: parent = (int)Attr.U32(v); break;
                case Nl.IFLA_LINK_NETNSID: nsid = Attr.S32(v); break;
                case Nl.IFLA_ADDRESS: addr = new PhysicalAddress(v.ToArray()); break;
                case Nl.IFLA_OPERSTATE: oper = (LinkOperState)Attr.U8(v); break;
                case Nl.IFLA_IFALIAS: alias = Attr.String(v); break;
                case Nl.IFLA_XDP: xdp = XdpCodec.Parse(v); break;
                case Nl.IFLA_LINKINFO:
                    var li = new AttributeReader(v);
                    while (li.TryRead(out ushort lt, out ReadOnlySpan<byte> lv))
                    {
                        if (lt == Nl.IFLA_INFO_KIND) kind = Attr.String(lv);
                        else if (lt == Nl.IFLA_INFO_SLAVE_KIND) portKind = Attr.String(lv);
                        else if (lt == Nl.IFLA_INFO_DATA)
                        {
                            var d = new AttributeReader(lv);
                            while (d.TryRead(out ushort dt, out ReadOnlySpan<byte> dv))
                                (infoData ??= []).Add(new RawAttribute(dt, dv.ToArray()));
                        }
                    }
                    break;
                case Nl.IFLA_BROADCAST:
                case 7 /* IFLA_STATS */:
                case 23 /* IFLA_STATS64 */:
                    break; // known, not surfaced
                default:
                    (unknown ??= []).Add(new RawAttribute(t, v.ToArray()));
                    break;
            }
        }
        link = new Link
        {
            Index = h.ifi_index,
            Name = name,
            Flags = h.ifi_flags,
            HardwareType = h.ifi_type,
            Mtu = mtu,
            Address = addr,
            Kind = kind,
            PortKind = portKind,
            MasterIndex = master,
            ParentIndex = parent,
            LinkNetnsId = nsid,
            OperState = oper,
            TxQueueLength = txq,
            Alias = alias,
            Xdp = xdp,
            UnknownAttributes = unknown ?? (IReadOnlyList<RawAttribute>)[],
            InfoData = infoData ?? (IReadOnlyList<RawAttribute>)[],
        };
        return true;
    }

    /// <summary>Body of RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL) for a spec.</summary>
    public static void WriteCreate(NetlinkWriter w, LinkSpec spec)
    {
        LinkSpec.Check(spec.Name);
        w.Struct(new ifinfomsg
        {
            ifi_flags = spec.Up ? Nl.IFF_UP : 0,
            ifi_change = spec.Up ? Nl.IFF_UP : 0,
        });
        w.String(Nl.IFLA_IFNAME, spec.Name);
        if (spec.Mtu is int mtu)
            w.U32(Nl.IFLA_MTU, (uint)mtu);
        if (spec.Address is not null)
            w.Bytes(Nl.IFLA_ADDRESS, spec.Address.GetAddressBytes());
        if (spec.TxQueueLength is int q)
            w.U32(Nl.IFLA_TXQLEN, (uint)q);
        if (spec.MasterIndex is int master)
            w.U32(Nl.IFLA_MASTER, (uint)master);
        if (spec.LowerIndex is int lower)
            w.U32(Nl.IFLA_LINK, (uint)lower);
        int info = w.BeginNested(Nl.IFLA_LINKINFO);
        w.String(Nl.IFLA_INFO_KIND, spec.Kind);
        if (spec.HasInfoData)
        {
            int data = w.BeginNested(Nl.IFLA_INFO_DATA);
            spec.WriteInfoData(w);
            w.EndNested(data);
        }
        w.EndNested(info);
    }

    /// <summary>Body of RTM_NEWLINK (no create flags) changing an existing link.</summary>
    public static void WriteSet(NetlinkWriter w, int index, LinkChanges c)
    {
        uint flags = c.Up == true ? Nl.IFF_UP : 0, change = c.Up is null ? 0 : Nl.IFF_UP;
        w.Struct(new ifinfomsg { ifi_index = index, ifi_flags = flags, ifi_change = change });
        if (c.Name is not null)
        {
            LinkSpec.Check(c.Name);
            w.String(Nl.IFLA_IFNAME, c.Name);
        }
        if (c.Mtu is int mtu)
            w.U32(Nl.IFLA_MTU, (uint)mtu);
        if (c.Address is not null)
            w.Bytes(Nl.IFLA_ADDRESS, c.Address.GetAddressBytes());
        if (c.Alias is not null)
            w.String(Nl.IFLA_IFALIAS, c.Alias);
        if (c.MasterIndex is int m)
            w.U32(Nl.IFLA_MASTER, (uint)m);
        if (c.TxQueueLength is int q)
            w.U32(Nl.IFLA_TXQLEN, (uint)q);
        if (c.Namespace is { IsCurrent: false, Fd: { } fd })
            w.U32(Nl.IFLA_NET_NS_FD, (uint)fd.Fd);
        if (c.NamespacePid is int pid)
            w.U32(Nl.IFLA_NET_NS_PID, (uint)pid);
    }
}
