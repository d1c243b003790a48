using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Netcore.Interop;
using Netcore.Threading;

namespace Netcore.Xdp.Tests;

/// <summary>AF_XDP ABI constants (linux/if_xdp.h, sys/socket.h); checked against the headers by <see cref="XskMapTests.AfXdpAbiMatchesTheHeaders"/>.</summary>
internal static class XdpAbi
{
    public const int AF_XDP = 44;
    public const int SOL_XDP = 283;
    public const int XDP_MMAP_OFFSETS = 1;
    public const int XDP_RX_RING = 2;
    public const int XDP_TX_RING = 3;
    public const int XDP_UMEM_REG = 4;
    public const int XDP_UMEM_FILL_RING = 5;
    public const int XDP_UMEM_COMPLETION_RING = 6;
    public const ushort XDP_COPY = 1 << 1;
    public const long XDP_PGOFF_RX_RING = 0;
    public const long XDP_UMEM_PGOFF_FILL_RING = 0x100000000;
    public const int SOCK_RAW = 3;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int PROT_READ_WRITE = 0x1 | 0x2;
    public const int MAP_SHARED = 0x01;
    public const int MAP_PRIVATE = 0x02;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_POPULATE = 0x8000;
    public const short POLLIN = 0x1;
}

/// <summary>struct xdp_umem_reg (linux/if_xdp.h); the last word is tx_metadata_len on 6.8+ headers, padding before.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct xdp_umem_reg
{
    public ulong addr;
    public ulong len;
    public uint chunk_size;
    public uint headroom;
    public uint flags;
    public uint tx_metadata_len;
}

/// <summary>struct sockaddr_xdp (linux/if_xdp.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct sockaddr_xdp
{
    public ushort sxdp_family;
    public ushort sxdp_flags;
    public uint sxdp_ifindex;
    public uint sxdp_queue_id;
    public uint sxdp_shared_umem_fd;
}

/// <summary>struct xdp_ring_offset (linux/if_xdp.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct xdp_ring_offset
{
    public ulong producer;
    public ulong consumer;
    public ulong desc;
    public ulong flags;
}

/// <summary>struct xdp_mmap_offsets (linux/if_xdp.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct xdp_mmap_offsets
{
    public xdp_ring_offset rx;
    public xdp_ring_offset tx;
    public xdp_ring_offset fr;
    public xdp_ring_offset cr;
}

/// <summary>struct xdp_desc (linux/if_xdp.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct xdp_desc
{
    public ulong addr;
    public uint len;
    public uint options;
}

/// <summary>
/// A minimal AF_XDP receive socket for tests: a UMEM of <see cref="FrameCount"/> 4 KiB frames,
/// fill and completion rings, an RX ring, all mmapped (Documentation/networking/af_xdp.rst).
/// Create it on a thread inside the namespace of the interface it will bind to.
/// </summary>
internal sealed unsafe class AfXdpSocket : IDisposable
{
    public const int FrameSize = 4096;
    public const int FrameCount = 16;
    public const int RingSize = 8;

    private readonly byte* _umem;
    private readonly byte* _fill;
    private readonly nuint _fillLen;
    private readonly byte* _rx;
    private readonly nuint _rxLen;
    private readonly xdp_mmap_offsets _off;
    private uint _fillProducer;

    public int Fd { get; }

    public AfXdpSocket()
    {
        Fd = SysCallException.Check(Libc.socket(XdpAbi.AF_XDP, XdpAbi.SOCK_RAW | XdpAbi.SOCK_CLOEXEC, 0), "socket(AF_XDP)");
        try
        {
            _umem = Map(null, FrameSize * FrameCount, XdpAbi.MAP_PRIVATE | XdpAbi.MAP_ANONYMOUS, -1, 0, "mmap(umem)");
            var reg = new xdp_umem_reg { addr = (ulong)_umem, len = FrameSize * FrameCount, chunk_size = FrameSize };
            SysCallException.Check(Libc.setsockopt(Fd, XdpAbi.SOL_XDP, XdpAbi.XDP_UMEM_REG, &reg, (uint)sizeof(xdp_umem_reg)), "setsockopt(XDP_UMEM_REG)");
            int size = RingSize;
            SysCallException.Check(Libc.setsockopt(Fd, XdpAbi.SOL_XDP, XdpAbi.XDP_UMEM_FILL_RING, &size, sizeof(int)), "setsockopt(XDP_UMEM_FILL_RING)");
            SysCallException.Check(Libc.setsockopt(Fd, XdpAbi.SOL_XDP, XdpAbi.XDP_UMEM_COMPLETION_RING, &size, sizeof(int)), "setsockopt(XDP_UMEM_COMPLETION_RING)");
            SysCallException.Check(Libc.setsockopt(Fd, XdpAbi.SOL_XDP, XdpAbi.XDP_RX_RING, &size, sizeof(int)), "setsockopt(XDP_RX_RING)");
            xdp_mmap_offsets off;
            uint len = (uint)sizeof(xdp_mmap_offsets);
            SysCallException.Check(Libc.getsockopt(Fd, XdpAbi.SOL_XDP, XdpAbi.XDP_MMAP_OFFSETS, &off, &len), "getsockopt(XDP_MMAP_OFFSETS)");
            _off = off;
            _fillLen = (nuint)(off.fr.desc + RingSize * sizeof(ulong));
            _fill = Map(null, _fillLen, XdpAbi.MAP_SHARED | XdpAbi.MAP_POPULATE, Fd, XdpAbi.XDP_UMEM_PGOFF_FILL_RING, "mmap(fill ring)");
            _rxLen = (nuint)(off.rx.desc + (ulong)(RingSize * sizeof(xdp_desc)));
            _rx = Map(null, _rxLen, XdpAbi.MAP_SHARED | XdpAbi.MAP_POPULATE, Fd, XdpAbi.XDP_PGOFF_RX_RING, "mmap(rx ring)");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static byte* Map(void* addr, nuint length, int flags, int fd, long offset, string call)
    {
        void* p = Libc.mmap(addr, length, XdpAbi.PROT_READ_WRITE, flags, fd, offset);
        if (p == (void*)-1)
            SysCallException.ThrowLast(call);
        return (byte*)p;
    }

    /// <summary>bind(2) with a struct sockaddr_xdp.</summary>
    public void Bind(int ifindex, uint queueId, ushort flags)
    {
        var sa = new sockaddr_xdp { sxdp_family = XdpAbi.AF_XDP, sxdp_flags = flags, sxdp_ifindex = (uint)ifindex, sxdp_queue_id = queueId };
        SysCallException.Check(Libc.bind(Fd, &sa, (uint)sizeof(sockaddr_xdp)), "bind(AF_XDP)");
    }

    /// <summary>Hands UMEM frames to the kernel on the fill ring (one descriptor = one frame address).</summary>
    public void PostFill(int count)
    {
        ulong* ring = (ulong*)(_fill + _off.fr.desc);
        for (int i = 0; i < count; i++)
        {
            ring[_fillProducer & (RingSize - 1)] = (ulong)((_fillProducer % FrameCount) * FrameSize);
            _fillProducer++;
        }
        Volatile.Write(ref *(uint*)(_fill + _off.fr.producer), _fillProducer); // store-release: descriptors before producer
    }

    /// <summary>Frames the kernel has produced on the RX ring but we have not consumed.</summary>
    public uint RxPending => Volatile.Read(ref *(uint*)(_rx + _off.rx.producer)) - *(uint*)(_rx + _off.rx.consumer);

    /// <summary>Consumes one RX descriptor and copies its frame out of the UMEM; null when the ring is empty.</summary>
    public (xdp_desc Desc, byte[] Frame)? TryReceive()
    {
        uint* cons = (uint*)(_rx + _off.rx.consumer);
        uint c = *cons;
        if (Volatile.Read(ref *(uint*)(_rx + _off.rx.producer)) == c)
            return null;
        xdp_desc d = ((xdp_desc*)(_rx + _off.rx.desc))[c & (RingSize - 1)];
        byte[] frame = new ReadOnlySpan<byte>(_umem + d.addr, (int)d.len).ToArray();
        Volatile.Write(ref *cons, c + 1);
        return (d, frame);
    }

    /// <summary>Waits with poll(2) for POLLIN (RX ring not empty).</summary>
    public bool WaitReadable(int timeoutMs)
    {
        var p = new pollfd { fd = Fd, events = XdpAbi.POLLIN };
        return Libc.poll(&p, 1, timeoutMs) > 0 && (p.revents & XdpAbi.POLLIN) != 0;
    }

    public void Dispose()
    {
        if (_rx != null)
            Libc.munmap(_rx, _rxLen);
        if (_fill != null)
            Libc.munmap(_fill, _fillLen);
        if (Fd >= 0)
            Libc.close(Fd);
        if (_umem != null)
            Libc.munmap(_umem, FrameSize * FrameCount);
    }
}

/// <summary>
/// BPF_MAP_TYPE_XSKMAP with a real AF_XDP socket: stored through the typed map API, and used by an
/// XDP program's bpf_redirect_map to deliver a frame into the socket's RX ring.
/// Namespaces a (va) and b (vb) joined by a veth pair; the socket binds to vb, queue 0, copy mode.
/// </summary>
public sealed unsafe class XskMapTests : IDisposable
{
    private readonly TestNetns _a;
    private readonly TestNetns _b;

    public XskMapTests()
    {
        _a = TestNetns.Create("xka");
        _b = TestNetns.Create("xkb");
        _a.Veth("va", _b, "vb");
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }

    private static int Ifindex(TestNetns ns, string dev) => ns.IpJson($"link show {dev}")[0].GetProperty("ifindex").GetInt32();

    private static BpfMap CreateXskMap() =>
        BpfMap.Create(new BpfMapSpec { Type = BpfMapType.XskMap, KeySize = 4, ValueSize = 4, MaxEntries = 4, Name = "xsks" });

    private AfXdpSocket BoundSocket()
    {
        int ifindex = Ifindex(_b, "vb");
        return NetnsThread.Run(_b.Path, () =>
        {
            var s = new AfXdpSocket();
            try
            {
                s.Bind(ifindex, 0, XdpAbi.XDP_COPY);
                return s;
            }
            catch
            {
                s.Dispose();
                throw;
            }
        });
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["bpftool"])]
    public void XskMapStoresABoundAfXdpSocket()
    {
        using var xsk = BoundSocket();
        using var map = CreateXskMap();
        map.UpdateFd(0, xsk.Fd);

        // net/xdp/xskmap.c xsk_map_update_elem: storing the socket already in the slot is a no-op even with NOEXIST;
        // another socket with NOEXIST on an occupied slot is EEXIST, EXIST on an empty slot ENOENT.
        // So these prove slot 0 holds this very socket and slot 1 holds nothing.
        map.UpdateFd(0, xsk.Fd, MapUpdateFlags.NoExist);
        using var other = NetnsThread.Run(_b.Path, () => new AfXdpSocket());
        Assert.Equal("EEXIST", Assert.Throws<BpfException>(() => map.UpdateFd(0, other.Fd, MapUpdateFlags.NoExist)).ErrorName);
        Assert.Equal("ENOENT", Assert.Throws<BpfException>(() => map.UpdateFd(1, xsk.Fd, MapUpdateFlags.Exist)).ErrorName);
        map.UpdateFd(0, xsk.Fd, MapUpdateFlags.Exist); // replace in place
        map.UpdateFd(3, xsk.Fd, MapUpdateFlags.NoExist); // one socket may sit in several slots

        // The kernel does not return xdp_sock pointers to user space (xsk_map_lookup_elem_sys_only).
        var e = Assert.Throws<BpfException>(() => map.AsMap<uint, uint>().TryLookup(0, out _));
        Assert.Equal("EOPNOTSUPP", e.ErrorName);
        // bpftool sees the same: the map is an xskmap, and every slot's value is "Operation not supported".
        uint id = map.GetInfo().Id;
        var show = JsonDocument.Parse(Shell.ShOk($"bpftool map show id {id} -j")).RootElement;
        Assert.Equal("xskmap", show.GetProperty("type").GetString());
        Assert.Equal(4, show.GetProperty("max_entries").GetInt32());
        var dump = JsonDocument.Parse(Shell.ShOk($"bpftool map dump id {id} -j")).RootElement;
        Assert.Equal(4, dump.GetArrayLength());
        Assert.All(dump.EnumerateArray(), entry => Assert.Equal("Operation not supported", entry.GetProperty("value").GetProperty("error").GetString()));

        Assert.True(map.AsMap<uint, uint>().Delete(0));
        Assert.Equal("ENOENT", Assert.Throws<BpfException>(() => map.UpdateFd(0, xsk.Fd, MapUpdateFlags.Exist)).ErrorName);
        map.UpdateFd(3, xsk.Fd, MapUpdateFlags.Exist); // slot 3 still holds it
    }

    [LinuxFact(Bpf = true, Netns = true)]
    public void RedirectMapDeliversAFrameToTheAfXdpRxRing()
    {
        using var xsk = BoundSocket();
        using var map = CreateXskMap();
        map.UpdateFd(0, xsk.Fd);

        // r2 = ctx->rx_queue_index; return bpf_redirect_map(&xsks, r2, XDP_PASS)
        using var prog = new BpfAssembler()
            .Load(BpfSize.Word, BpfRegister.R2, BpfRegister.R1, 16) // struct xdp_md.rx_queue_index
            .LoadMap(BpfRegister.R1, "xsks")
            .Mov(BpfRegister.R3, 2) // XDP_PASS when the slot is empty
            .Call(BpfHelper.RedirectMap)
            .Exit()
            .Load(BpfProgramType.Xdp, new Dictionary<string, BpfMap> { ["xsks"] = map }, new BpfProgramOptions { Name = "xsk_redirect" });
        using var link = prog.AttachXdp(Ifindex(_b, "vb"), netns: _b.Path);
        xsk.PostFill(AfXdpSocket.RingSize);
        Assert.Equal(0u, xsk.RxPending);

        // A broadcast frame with the IEEE local-experimental ethertype 0x88B5 and a unique marker.
        byte[] marker = Encoding.ASCII.GetBytes($"netcore-xsk-{Guid.NewGuid():N}");
        byte[] frame = new byte[64];
        frame.AsSpan(0, 6).Fill(0xff);
        new byte[] { 0x02, 0, 0, 0, 0, 0x01 }.CopyTo(frame, 6);
        frame[12] = 0x88;
        frame[13] = 0xb5;
        marker.CopyTo(frame, 14);
        int ifindexA = Ifindex(_a, "va");

        byte[]? got = null;
        xdp_desc desc = default;
        for (int attempt = 0; attempt < 5 && got is null; attempt++)
        {
            NetnsThread.Run(_a.Path, () => SendRaw(ifindexA, frame));
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
            while (got is null && DateTime.UtcNow < deadline)
            {
                if (!xsk.WaitReadable(200))
                    continue;
                while (xsk.TryReceive() is { } r)
                {
                    // Other traffic (IPv6 router solicitations, MLD) may be redirected too; look for ours.
                    if (r.Frame.AsSpan().IndexOf(marker) >= 0)
                    {
                        got = r.Frame;
                        desc = r.Desc;
                        break;
                    }
                }
            }
        }
        Assert.NotNull(got);
        Assert.Equal(frame.Length, got.Length);
        Assert.Equal(frame, got);
        Assert.True(desc.addr < AfXdpSocket.FrameSize * AfXdpSocket.FrameCount, $"descriptor address {desc.addr} inside the UMEM");

        // With the slot emptied, bpf_redirect_map falls back to XDP_PASS and nothing more reaches the socket.
        Assert.True(map.AsMap<uint, uint>().Delete(0));
        byte[] second = (byte[])frame.Clone();
        Encoding.ASCII.GetBytes($"netcore-xsk-{Guid.NewGuid():N}").CopyTo(second, 14);
        NetnsThread.Run(_a.Path, () => SendRaw(ifindexA, second));
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(1);
        while (DateTime.UtcNow < until)
        {
            if (xsk.WaitReadable(100) && xsk.TryReceive() is { } r)
                Assert.True(r.Frame.AsSpan().IndexOf(second.AsSpan(14, 44)) < 0, "frame redirected after its xskmap slot was deleted");
        }
    }

    private static int SendRaw(int ifindex, byte[] frame)
    {
        const int AF_PACKET = 17;
        int s = SysCallException.Check(Libc.socket(AF_PACKET, XdpAbi.SOCK_RAW | XdpAbi.SOCK_CLOEXEC, 0), "socket(AF_PACKET)");
        try
        {
            var sll = new sockaddr_ll { sll_family = AF_PACKET, sll_protocol = 0xb588 /* htons(0x88b5) */, sll_ifindex = ifindex, sll_halen = 6 };
            for (int i = 0; i < 6; i++)
                sll.sll_addr[i] = 0xff;
            fixed (byte* p = frame)
                return (int)SysCallException.Check(Libc.sendto(s, p, (nuint)frame.Length, 0, &sll, (uint)sizeof(sockaddr_ll)), "sendto(AF_PACKET)");
        }
        finally
        {
            Libc.close(s);
        }
    }

    [LinuxFact(Tools = ["gcc"])]
    public void AfXdpAbiMatchesTheHeaders()
    {
        var errors = StructLayoutCheck.Compare(["sys/socket.h", "linux/if_xdp.h"],
        [
            new StructLayoutSpec("struct xdp_umem_reg", typeof(xdp_umem_reg), ("addr", "addr"), ("len", "len"), ("chunk_size", "chunk_size"),
                ("headroom", "headroom"), ("flags", "flags")),
            new StructLayoutSpec("struct sockaddr_xdp", typeof(sockaddr_xdp), ("sxdp_family", "sxdp_family"), ("sxdp_flags", "sxdp_flags"),
                ("sxdp_ifindex", "sxdp_ifindex"), ("sxdp_queue_id", "sxdp_queue_id"), ("sxdp_shared_umem_fd", "sxdp_shared_umem_fd")),
            new StructLayoutSpec("struct xdp_ring_offset", typeof(xdp_ring_offset), ("producer", "producer"), ("consumer", "consumer"),
                ("desc", "desc"), ("flags", "flags")),
            new StructLayoutSpec("struct xdp_mmap_offsets", typeof(xdp_mmap_offsets), ("rx", "rx"), ("tx", "tx"), ("fr", "fr"), ("cr", "cr")),
            new StructLayoutSpec("struct xdp_desc", typeof(xdp_desc), ("addr", "addr"), ("len", "len"), ("options", "options")),
        ]);
        Assert.Empty(errors);

        var expected = new Dictionary<string, long>
        {
            ["AF_XDP"] = XdpAbi.AF_XDP,
            ["SOL_XDP"] = XdpAbi.SOL_XDP,
            ["XDP_MMAP_OFFSETS"] = XdpAbi.XDP_MMAP_OFFSETS,
            ["XDP_RX_RING"] = XdpAbi.XDP_RX_RING,
            ["XDP_TX_RING"] = XdpAbi.XDP_TX_RING,
            ["XDP_UMEM_REG"] = XdpAbi.XDP_UMEM_REG,
            ["XDP_UMEM_FILL_RING"] = XdpAbi.XDP_UMEM_FILL_RING,
            ["XDP_UMEM_COMPLETION_RING"] = XdpAbi.XDP_UMEM_COMPLETION_RING,
            ["XDP_COPY"] = XdpAbi.XDP_COPY,
            ["XDP_PGOFF_RX_RING"] = XdpAbi.XDP_PGOFF_RX_RING,
            ["XDP_UMEM_PGOFF_FILL_RING"] = XdpAbi.XDP_UMEM_PGOFF_FILL_RING,
            ["SOCK_RAW"] = XdpAbi.SOCK_RAW,
            ["SOCK_CLOEXEC"] = XdpAbi.SOCK_CLOEXEC,
            ["BPF_MAP_TYPE_XSKMAP"] = (long)BpfMapType.XskMap,
            ["BPF_FUNC_redirect_map"] = (long)BpfHelper.RedirectMap,
            ["offsetof(struct xdp_md, rx_queue_index)"] = 16,
        };
        var actual = CHeaderProbe.Evaluate(["sys/socket.h", "linux/if_xdp.h", "linux/bpf.h"], expected.Keys);
        Assert.All(expected, kv => Assert.True(kv.Value == actual[kv.Key], $"{kv.Key}: {actual[kv.Key]} in C, {kv.Value} here"));
    }
}
