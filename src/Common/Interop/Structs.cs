#pragma warning disable CS8981 // C names (msghdr, iovec, ...) are kept as in the headers
using System.Runtime.InteropServices;

namespace Netcore.Interop;

// Blittable mirrors of the C structs passed to Libc. Their sizes and offsets are checked
// against the real headers by tests/Netcore.Common.Tests/StructLayoutTests.cs.

/// <summary>struct sockaddr_nl (linux/netlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct sockaddr_nl
{
    public ushort nl_family;
    public ushort nl_pad;
    public uint nl_pid;
    public uint nl_groups;
}

/// <summary>struct sockaddr_in (netinet/in.h). Port and address are in network byte order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct sockaddr_in
{
    public ushort sin_family;
    public ushort sin_port;
    public uint sin_addr;
    public fixed byte sin_zero[8];
}

/// <summary>struct sockaddr_in6 (netinet/in.h). Port is in network byte order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct sockaddr_in6
{
    public ushort sin6_family;
    public ushort sin6_port;
    public uint sin6_flowinfo;
    public fixed byte sin6_addr[16];
    public uint sin6_scope_id;
}

/// <summary>struct sockaddr_storage (sys/socket.h): room for any address family.</summary>
[StructLayout(LayoutKind.Sequential, Size = 128)]
internal struct sockaddr_storage
{
    public ushort ss_family;
}

/// <summary>struct sockaddr_ll (linux/if_packet.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct sockaddr_ll
{
    public ushort sll_family;
    public ushort sll_protocol;
    public int sll_ifindex;
    public ushort sll_hatype;
    public byte sll_pkttype;
    public byte sll_halen;
    public fixed byte sll_addr[8];
}

/// <summary>struct iovec (sys/uio.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct iovec
{
    public void* iov_base;
    public nuint iov_len;
}

/// <summary>struct msghdr (sys/socket.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct msghdr
{
    public void* msg_name;
    public uint msg_namelen;
    public iovec* msg_iov;
    public nuint msg_iovlen;
    public void* msg_control;
    public nuint msg_controllen;
    public int msg_flags;
}

/// <summary>struct mmsghdr (sys/socket.h) for sendmmsg/recvmmsg.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct mmsghdr
{
    public msghdr msg_hdr;
    public uint msg_len;
}

/// <summary>struct cmsghdr (sys/socket.h). Data follows at CMSG_ALIGN(sizeof(cmsghdr)).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct cmsghdr
{
    public nuint cmsg_len;
    public int cmsg_level;
    public int cmsg_type;
}

/// <summary>struct timespec (time.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct timespec
{
    public long tv_sec;
    public long tv_nsec;
}

/// <summary>struct itimerspec (time.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct itimerspec
{
    public timespec it_interval;
    public timespec it_value;
}

/// <summary>struct epoll_event (sys/epoll.h); packed on x86-64, hence Pack = 4.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
internal struct epoll_event
{
    public uint events;
    public ulong data;
}

/// <summary>struct pollfd (poll.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct pollfd
{
    public int fd;
    public short events;
    public short revents;
}

/// <summary>struct ifreq (net/if.h) with the union viewed as flags (ifr_flags) or index (ifr_ifindex).</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal unsafe struct ifreq
{
    [FieldOffset(0)] public fixed byte ifr_name[16];
    [FieldOffset(16)] public short ifr_flags;
    [FieldOffset(16)] public int ifr_ifindex;
    [FieldOffset(16)] public int ifr_mtu;
}

/// <summary>Control-message helpers mirroring the CMSG_* macros of sys/socket.h.</summary>
internal static unsafe class Cmsg
{
    /// <summary>CMSG_ALIGN: round up to the size of size_t.</summary>
    public static int Align(int len) => (len + sizeof(nuint) - 1) & ~(sizeof(nuint) - 1);

    /// <summary>CMSG_SPACE: room a control message with <paramref name="dataLen"/> bytes takes.</summary>
    public static int Space(int dataLen) => Align(sizeof(cmsghdr)) + Align(dataLen);

    /// <summary>CMSG_LEN: value for cmsg_len.</summary>
    public static int Len(int dataLen) => Align(sizeof(cmsghdr)) + dataLen;

    /// <summary>Offset of the data from the start of a header (CMSG_DATA).</summary>
    public static int DataOffset => Align(sizeof(cmsghdr));
}
