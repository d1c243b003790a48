namespace Netcore.Xdp;

/// <summary>Program types (enum bpf_prog_type, include/uapi/linux/bpf.h).</summary>
public enum BpfProgramType
{
    /// <summary>BPF_PROG_TYPE_UNSPEC.</summary>
    Unspecified = 0,
    /// <summary>Socket filter (SO_ATTACH_BPF).</summary>
    SocketFilter = 1,
    /// <summary>kprobe.</summary>
    Kprobe = 2,
    /// <summary>tc classifier (clsact, TCX).</summary>
    SchedCls = 3,
    /// <summary>tc action.</summary>
    SchedAct = 4,
    /// <summary>tracepoint.</summary>
    Tracepoint = 5,
    /// <summary>XDP.</summary>
    Xdp = 6,
    /// <summary>perf event.</summary>
    PerfEvent = 7,
    /// <summary>cgroup skb.</summary>
    CgroupSkb = 8,
    /// <summary>cgroup sock.</summary>
    CgroupSock = 9,
    /// <summary>sock_ops.</summary>
    SockOps = 13,
    /// <summary>sk_skb.</summary>
    SkSkb = 14,
    /// <summary>sk_msg.</summary>
    SkMsg = 16,
    /// <summary>raw tracepoint.</summary>
    RawTracepoint = 17,
    /// <summary>cgroup sock_addr.</summary>
    CgroupSockAddr = 18,
    /// <summary>sk_reuseport.</summary>
    SkReuseport = 21,
    /// <summary>flow dissector.</summary>
    FlowDissector = 22,
    /// <summary>tracing (fentry/fexit).</summary>
    Tracing = 26,
    /// <summary>sk_lookup (socket dispatch per network namespace).</summary>
    SkLookup = 30,
    /// <summary>syscall.</summary>
    Syscall = 31,
}

/// <summary>Map types (enum bpf_map_type).</summary>
public enum BpfMapType
{
    /// <summary>BPF_MAP_TYPE_UNSPEC.</summary>
    Unspecified = 0,
    /// <summary>Hash table.</summary>
    Hash = 1,
    /// <summary>Array indexed by u32.</summary>
    Array = 2,
    /// <summary>Array of program fds for tail calls.</summary>
    ProgArray = 3,
    /// <summary>perf event array.</summary>
    PerfEventArray = 4,
    /// <summary>Hash with one value per possible CPU.</summary>
    PerCpuHash = 5,
    /// <summary>Array with one value per possible CPU.</summary>
    PerCpuArray = 6,
    /// <summary>Stack trace.</summary>
    StackTrace = 7,
    /// <summary>cgroup array.</summary>
    CgroupArray = 8,
    /// <summary>LRU hash.</summary>
    LruHash = 9,
    /// <summary>LRU per-CPU hash.</summary>
    LruPerCpuHash = 10,
    /// <summary>Longest-prefix-match trie (key: u32 prefix length + data).</summary>
    LpmTrie = 11,
    /// <summary>Array of maps.</summary>
    ArrayOfMaps = 12,
    /// <summary>Hash of maps.</summary>
    HashOfMaps = 13,
    /// <summary>Device map for bpf_redirect_map.</summary>
    DevMap = 14,
    /// <summary>Socket map.</summary>
    SockMap = 15,
    /// <summary>CPU map for XDP redirect to CPUs.</summary>
    CpuMap = 16,
    /// <summary>AF_XDP socket map.</summary>
    XskMap = 17,
    /// <summary>Socket hash.</summary>
    SockHash = 18,
    /// <summary>reuseport socket array.</summary>
    ReuseportSockArray = 20,
    /// <summary>Queue.</summary>
    Queue = 22,
    /// <summary>Stack.</summary>
    Stack = 23,
    /// <summary>Socket local storage.</summary>
    SkStorage = 24,
    /// <summary>Device hash map.</summary>
    DevMapHash = 25,
    /// <summary>Ring buffer (kernel to user).</summary>
    RingBuf = 27,
    /// <summary>Bloom filter.</summary>
    BloomFilter = 30,
    /// <summary>User ring buffer.</summary>
    UserRingBuf = 31,
}

/// <summary>Attach types (enum bpf_attach_type) used by the attach APIs here.</summary>
public enum BpfAttachType
{
    /// <summary>BPF_CGROUP_INET_INGRESS (0; also "none" for program types that need none).</summary>
    None = 0,
    /// <summary>BPF_XDP_DEVMAP.</summary>
    XdpDevMap = 33,
    /// <summary>BPF_XDP_CPUMAP.</summary>
    XdpCpuMap = 35,
    /// <summary>BPF_SK_LOOKUP.</summary>
    SkLookup = 36,
    /// <summary>BPF_XDP (bpf_link on a device).</summary>
    Xdp = 37,
    /// <summary>BPF_TCX_INGRESS (Linux 6.6).</summary>
    TcxIngress = 46,
    /// <summary>BPF_TCX_EGRESS (Linux 6.6).</summary>
    TcxEgress = 47,
}

/// <summary>Map creation flags (BPF_F_* for BPF_MAP_CREATE).</summary>
[Flags]
public enum BpfMapFlags : uint
{
    /// <summary>No flags.</summary>
    None = 0,
    /// <summary>BPF_F_NO_PREALLOC: allocate hash elements on demand (required for LPM trie).</summary>
    NoPrealloc = 1,
    /// <summary>BPF_F_NO_COMMON_LRU.</summary>
    NoCommonLru = 2,
    /// <summary>BPF_F_NUMA_NODE.</summary>
    NumaNode = 4,
    /// <summary>BPF_F_RDONLY: read-only from user space.</summary>
    ReadOnly = 8,
    /// <summary>BPF_F_WRONLY.</summary>
    WriteOnly = 16,
    /// <summary>BPF_F_ZERO_SEED.</summary>
    ZeroSeed = 64,
    /// <summary>BPF_F_RDONLY_PROG: read-only for programs.</summary>
    ReadOnlyProgram = 128,
    /// <summary>BPF_F_WRONLY_PROG.</summary>
    WriteOnlyProgram = 256,
    /// <summary>BPF_F_MMAPABLE: the array can be memory-mapped.</summary>
    Mmapable = 1024,
    /// <summary>BPF_F_INNER_MAP: an inner map of a map-in-map whose max_entries may differ from the template's (5.10+).</summary>
    InnerMap = 4096,
}

/// <summary>Flags for map update (BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK).</summary>
[Flags]
public enum MapUpdateFlags : ulong
{
    /// <summary>BPF_ANY: create or replace.</summary>
    Any = 0,
    /// <summary>BPF_NOEXIST: only create.</summary>
    NoExist = 1,
    /// <summary>BPF_EXIST: only replace.</summary>
    Exist = 2,
    /// <summary>BPF_F_LOCK: take the value's bpf_spin_lock.</summary>
    Lock = 4,
}
