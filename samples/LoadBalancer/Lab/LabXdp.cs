using Netcore.Netlink;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// The lab's own XDP programs (bpf/decap.o), loaded through Netcore.Xdp and attached with
/// IFLA_XDP in native mode: <c>decap_xdp</c> on each backend's e0 (one load per backend, with
/// <c>decap_local_v4</c> set to the backend's address, and with IPv6 backends <c>decap_local_v6</c>
/// to its IPv6 address) and <c>pass_xdp</c> on the router's ends
/// of the LB nodes' and the backends' links (XDP_TX on a veth is delivered to the peer's NAPI,
/// which exists only while the peer has an XDP program: lb.c transmits with it, and decap_xdp
/// sends a daisy-chained packet on to its second hop with it). The attachments live as long as
/// the interfaces, that is until the lab deletes its namespaces.
/// </summary>
internal sealed class LabXdp : IDisposable
{
    /// <summary>decap_stats indices (bpf/decap.c DECAP_*).</summary>
    public enum DecapCounter : uint
    {
        Ipip = 0,
        Gue = 1,
        Pass = 2,
        Malformed = 3,
        Forwarded = 4,
    }

    private readonly List<BpfObject> _objects = [];
    private readonly Dictionary<int, BpfObject> _decap = [];

    /// <summary>Path of decap.o next to the assembly.</summary>
    public static string ObjectPath => Path.Combine(AppContext.BaseDirectory, "bpf", "decap.o");

    /// <summary>Loads and attaches every program of the lab.</summary>
    public static async Task<LabXdp> AttachAsync(LabTopology t, TextWriter log, CancellationToken ct)
    {
        var x = new LabXdp();
        try
        {
            var pass = BpfObject.Load(ObjectPath);
            x._objects.Add(pass);
            using (var router = NetlinkClient.Open(t.Router))
            {
                var routerEnds = new List<string>();
                for (int i = 1; i <= 2; i++)
                    routerEnds.Add(LabTopology.RouterLbLink(i));
                for (int i = 1; i <= t.BackendCount; i++)
                    routerEnds.Add(RouterBackendLink(i));
                foreach (string name in routerEnds)
                {
                    int ifindex = await router.GetLinkIndexAsync(name, ct).ConfigureAwait(false);
                    await XdpNetlinkAttachment.AttachAsync(router, ifindex, pass.Program("pass_xdp"), XdpMode.Native, cancellationToken: ct).ConfigureAwait(false);
                }
            }
            for (int i = 1; i <= t.BackendCount; i++)
            {
                var obj = BpfObject.Load(ObjectPath, new BpfObjectOptions
                {
                    Constants = t.Ipv6Backends
                        ? new Dictionary<string, byte[]>
                        {
                            ["decap_local_v4"] = LabTopology.BackendAddress(i).GetAddressBytes(),
                            ["decap_local_v6"] = LabTopology.BackendAddress6(i).GetAddressBytes(),
                        }
                        : new Dictionary<string, byte[]> { ["decap_local_v4"] = LabTopology.BackendAddress(i).GetAddressBytes() },
                });
                x._objects.Add(obj);
                x._decap[i] = obj;
                using var be = NetlinkClient.Open(t.Backend(i));
                int ifindex = await be.GetLinkIndexAsync(LabTopology.HostLink, ct).ConfigureAwait(false);
                var a = await XdpNetlinkAttachment.AttachAsync(be, ifindex, obj.Program("decap_xdp"), XdpMode.Native, cancellationToken: ct).ConfigureAwait(false);
                log.WriteLine($"lab: {t.Backend(i)}: decap_xdp attached to {LabTopology.HostLink} ({a.EffectiveMode}, program {a.ProgramId})");
            }
            return x;
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }

    /// <summary>The router's interface toward backend <paramref name="i"/> (named in LabTopology.BuildAsync).</summary>
    private static string RouterBackendLink(int i) => "r-be" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A decap_stats counter of backend <paramref name="backend"/>, summed over CPUs.</summary>
    public ulong DecapCount(int backend, DecapCounter counter) => _decap[backend].Map("decap_stats").AsPerCpu<uint, ulong>().Sum((uint)counter);

    /// <summary>Closes the objects' descriptors (the attached programs stay with their interfaces).</summary>
    public void Dispose()
    {
        foreach (BpfObject o in _objects)
            o.Dispose();
        _objects.Clear();
        _decap.Clear();
    }
}
