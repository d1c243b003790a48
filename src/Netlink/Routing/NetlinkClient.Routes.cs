using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

public sealed partial class NetlinkClient
{
    private static ushort WriteFlags(RouteWriteMode mode) => mode switch
    {
        RouteWriteMode.Replace => Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE,
        RouteWriteMode.Append => Nl.NLM_F_CREATE | Nl.NLM_F_APPEND,
        _ => Nl.NLM_F_CREATE | Nl.NLM_F_EXCL,
    };

    /// <summary>Adds a route (`ip route add`; <paramref name="mode"/> picks replace/append semantics).</summary>
    public ValueTask AddRouteAsync(Route route, RouteWriteMode mode = RouteWriteMode.Create, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(route);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_NEWROUTE, WriteFlags(mode), $"RTM_NEWROUTE {route}", w => RouteCodec.Write(w, route));
        return ValueTask.CompletedTask;
    }

    /// <summary>Adds or replaces a route (`ip route replace`).</summary>
    public ValueTask ReplaceRouteAsync(Route route, CancellationToken cancellationToken = default) =>
        AddRouteAsync(route, RouteWriteMode.Replace, cancellationToken);

    /// <summary>Deletes a route matching destination, table, type and (when given) gateway/oif/metric.</summary>
    public ValueTask DeleteRouteAsync(Route route, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(route);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELROUTE, 0, $"RTM_DELROUTE {route}", w => RouteCodec.Write(w, route, forDelete: true));
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Installs many routes pipelined (many RTM_NEWROUTE per sendmsg, failures matched by sequence
    /// number). Returns the routes that failed with their errors; an empty list means all were installed.
    /// </summary>
    public ValueTask<IReadOnlyList<BatchError>> AddRoutesAsync(IEnumerable<Route> routes, RouteWriteMode mode = RouteWriteMode.Create,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(routes);
        var errors = Batch(routes, Nl.RTM_NEWROUTE, WriteFlags(mode), "RTM_NEWROUTE (batch)", (w, r) => RouteCodec.Write(w, r), cancellationToken);
        return new(errors.ConvertAll(e => new BatchError(e.Index, e.Error)));
    }

    /// <summary>Deletes many routes pipelined; returns the failures.</summary>
    public ValueTask<IReadOnlyList<BatchError>> DeleteRoutesAsync(IEnumerable<Route> routes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(routes);
        var errors = Batch(routes, Nl.RTM_DELROUTE, 0, "RTM_DELROUTE (batch)", (w, r) => RouteCodec.Write(w, r, forDelete: true), cancellationToken);
        return new(errors.ConvertAll(e => new BatchError(e.Index, e.Error)));
    }

    /// <summary>Routes (RTM_GETROUTE dump), filtered by the kernel where it can and here otherwise; retried on NLM_F_DUMP_INTR.</summary>
    public IAsyncEnumerable<Route> GetRoutesAsync(RouteFilter? filter = null, CancellationToken cancellationToken = default) =>
        DumpAsync<Route>(Nl.RTM_GETROUTE, "RTM_GETROUTE dump", w => RouteCodec.WriteDumpRequest(w, filter), RouteParser(filter), cancellationToken);

    /// <summary>Like <see cref="GetRoutesAsync"/> but returns the whole consistent dump as a list.</summary>
    public ValueTask<List<Route>> GetRouteListAsync(RouteFilter? filter = null, CancellationToken cancellationToken = default) =>
        new(DumpList(Nl.RTM_GETROUTE, "RTM_GETROUTE dump", w => RouteCodec.WriteDumpRequest(w, filter), RouteParser(filter), cancellationToken));

    private static MessageParser<Route> RouteParser(RouteFilter? f) => [MethodImpl(MethodImplOptions.AggressiveOptimization)] (in NetlinkMessage m, out Route r) =>
        RouteCodec.TryParse(m, out r)
        && (f?.Table is not uint t || r.Table == t)
        && (f?.Family is not { } fam || r.Family == fam)
        && (f?.Protocol is not { } p || r.Protocol == p)
        && (f?.OutputIndex is not int o || r.OutputIndex == o)
        && (f is { SkipCloned: false } || !RouteCodec.IsCloned(r));
}
