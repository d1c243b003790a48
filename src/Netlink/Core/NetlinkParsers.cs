namespace Netcore.Netlink.Core;

/// <summary>
/// Parses every message of a datagram with the typed parser for its type: the entry point the
/// fuzz tests and the benchmark use. Malformed input only ever raises <see cref="NetlinkFormatException"/>.
/// </summary>
internal static class NetlinkParsers
{
    /// <summary>Parses all messages; returns how many produced a typed object.</summary>
    public static int ParseAll(ReadOnlySpan<byte> datagram)
    {
        int n = 0;
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage m))
        {
            object? o = m.Type switch
            {
                Nl.NLMSG_ERROR => NetlinkSocket.ToException(m, "fuzz"),
                Nl.RTM_NEWLINK or Nl.RTM_DELLINK => LinkCodec.TryParse(m, out Link l) ? l : null,
                Nl.RTM_NEWADDR or Nl.RTM_DELADDR => AddressCodec.TryParse(m, out InterfaceAddress a) ? a : null,
                Nl.RTM_NEWROUTE or Nl.RTM_DELROUTE => RouteCodec.TryParse(m, out Route r) ? Touch(r) : null,
                Nl.RTM_NEWNEIGH or Nl.RTM_DELNEIGH => NeighbourCodec.TryParse(m, out Neighbour nb) ? nb : null,
                Nl.RTM_NEWRULE or Nl.RTM_DELRULE => RuleCodec.TryParse(m, out Rule ru) ? ru : null,
                Nl.RTM_NEWNEXTHOP or Nl.RTM_DELNEXTHOP => NextHopCodec.TryParse(m, out NextHopObject nh) ? nh : null,
                Nl.RTM_NEWTFILTER => TcCodec.TryParseFilter(m, out TcFilter f) ? f : null,
                HtbCodec.RTM_NEWTCLASS => HtbCodec.TryParseClass(m, out TcClass c) ? c : null,
                _ => null,
            };
            if (o is not null)
                n++;
        }
        return n;
    }

    /// <summary>Parses generic netlink controller replies (nlmsg_type 0x10 collides with RTM_NEWLINK, so it has its own entry).</summary>
    public static int ParseGenericControl(ReadOnlySpan<byte> datagram)
    {
        int n = 0;
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage m))
        {
            if (m.Type == Nl.NLMSG_ERROR)
                _ = NetlinkSocket.ToException(m, "fuzz");
            else if (m.Type == Nl.GENL_ID_CTRL)
            {
                _ = GenericNetlinkClient.ParseFamily(m.Attributes(4).Rest());
                n++;
            }
            else if (m.Type > Nl.GENL_ID_CTRL)
            {
                // A dynamically numbered family: parsed as the ethtool link-modes reply.
                _ = GenericNetlinkClient.ParseLinkModes(m.Attributes(4).Rest());
                n++;
            }
        }
        return n;
    }

    // Materializes the lazily converted members so their conversions are exercised too.
    private static Route Touch(Route r)
    {
        _ = r.Destination;
        _ = r.Gateway;
        _ = r.PreferredSource;
        return r;
    }
}
