using Netcore.Interop;

namespace Netcore.Common.Tests;

public class StructLayoutTests
{
    private static readonly string[] Headers =
    [
        "sys/socket.h", "sys/uio.h", "netinet/in.h", "linux/netlink.h", "linux/if_packet.h",
        "time.h", "sys/epoll.h", "poll.h", "net/if.h", "sys/timerfd.h",
    ];

    [Fact]
    public void InteropStructsMatchTheCHeaders()
    {
        if (CHeaderProbe.Available() is { } reason)
            throw new InvalidOperationException(reason); // gcc is part of the build machine image

        var errors = StructLayoutCheck.Compare(Headers,
        [
            new("struct sockaddr_nl", typeof(sockaddr_nl), ("nl_family", "nl_family"), ("nl_pad", "nl_pad"), ("nl_pid", "nl_pid"), ("nl_groups", "nl_groups")),
            new("struct sockaddr_in", typeof(sockaddr_in), ("sin_family", "sin_family"), ("sin_port", "sin_port"), ("sin_addr", "sin_addr"), ("sin_zero", "sin_zero")),
            new("struct sockaddr_in6", typeof(sockaddr_in6), ("sin6_family", "sin6_family"), ("sin6_port", "sin6_port"), ("sin6_flowinfo", "sin6_flowinfo"), ("sin6_addr", "sin6_addr"), ("sin6_scope_id", "sin6_scope_id")),
            new("struct sockaddr_storage", typeof(sockaddr_storage), ("ss_family", "ss_family")),
            new("struct sockaddr_ll", typeof(sockaddr_ll), ("sll_family", "sll_family"), ("sll_protocol", "sll_protocol"), ("sll_ifindex", "sll_ifindex"), ("sll_hatype", "sll_hatype"), ("sll_pkttype", "sll_pkttype"), ("sll_halen", "sll_halen"), ("sll_addr", "sll_addr")),
            new("struct iovec", typeof(iovec), ("iov_base", "iov_base"), ("iov_len", "iov_len")),
            new("struct msghdr", typeof(msghdr), ("msg_name", "msg_name"), ("msg_namelen", "msg_namelen"), ("msg_iov", "msg_iov"), ("msg_iovlen", "msg_iovlen"), ("msg_control", "msg_control"), ("msg_controllen", "msg_controllen"), ("msg_flags", "msg_flags")),
            new("struct mmsghdr", typeof(mmsghdr), ("msg_hdr", "msg_hdr"), ("msg_len", "msg_len")),
            new("struct cmsghdr", typeof(cmsghdr), ("cmsg_len", "cmsg_len"), ("cmsg_level", "cmsg_level"), ("cmsg_type", "cmsg_type")),
            new("struct timespec", typeof(timespec), ("tv_sec", "tv_sec"), ("tv_nsec", "tv_nsec")),
            new("struct itimerspec", typeof(itimerspec), ("it_interval", "it_interval"), ("it_value", "it_value")),
            new("struct epoll_event", typeof(epoll_event), ("events", "events"), ("data", "data")),
            new("struct pollfd", typeof(pollfd), ("fd", "fd"), ("events", "events"), ("revents", "revents")),
            new("struct ifreq", typeof(ifreq), ("ifr_name", "ifr_name"), ("ifr_flags", "ifr_flags"), ("ifr_ifindex", "ifr_ifindex"), ("ifr_mtu", "ifr_mtu")),
        ]);
        Assert.Empty(errors);
    }

    [Fact]
    public void ConstantsMatchTheCHeaders()
    {
        var pairs = new (string C, long Ours)[]
        {
            ("AF_NETLINK", LinuxConstants.AF_NETLINK), ("AF_PACKET", LinuxConstants.AF_PACKET), ("AF_INET6", LinuxConstants.AF_INET6),
            ("SOCK_CLOEXEC", LinuxConstants.SOCK_CLOEXEC), ("SOCK_NONBLOCK", LinuxConstants.SOCK_NONBLOCK), ("SOL_NETLINK", LinuxConstants.SOL_NETLINK),
            ("SO_RCVBUFFORCE", LinuxConstants.SO_RCVBUFFORCE), ("SO_SNDBUFFORCE", LinuxConstants.SO_SNDBUFFORCE), ("SO_TIMESTAMPNS", LinuxConstants.SO_TIMESTAMPNS),
            ("SO_BINDTODEVICE", LinuxConstants.SO_BINDTODEVICE), ("SO_REUSEPORT", LinuxConstants.SO_REUSEPORT),
            ("MSG_PEEK", LinuxConstants.MSG_PEEK), ("MSG_TRUNC", LinuxConstants.MSG_TRUNC), ("MSG_DONTWAIT", LinuxConstants.MSG_DONTWAIT),
            ("IP_TTL", LinuxConstants.IP_TTL), ("IP_RECVTTL", LinuxConstants.IP_RECVTTL), ("IP_MINTTL", LinuxConstants.IP_MINTTL), ("IP_PKTINFO", LinuxConstants.IP_PKTINFO),
            ("IPV6_UNICAST_HOPS", LinuxConstants.IPV6_UNICAST_HOPS), ("IPV6_RECVHOPLIMIT", LinuxConstants.IPV6_RECVHOPLIMIT), ("IPV6_HOPLIMIT", LinuxConstants.IPV6_HOPLIMIT),
            ("IPV6_RECVPKTINFO", LinuxConstants.IPV6_RECVPKTINFO), ("IPV6_MINHOPCOUNT", LinuxConstants.IPV6_MINHOPCOUNT), ("IP_BIND_ADDRESS_NO_PORT", LinuxConstants.IP_BIND_ADDRESS_NO_PORT),
            ("IP_LOCAL_PORT_RANGE", LinuxConstants.IP_LOCAL_PORT_RANGE), ("TCP_MD5SIG", LinuxConstants.TCP_MD5SIG),
            ("CLONE_NEWNET", LinuxConstants.CLONE_NEWNET), ("CLONE_NEWNS", LinuxConstants.CLONE_NEWNS),
            ("O_CLOEXEC", LinuxConstants.O_CLOEXEC), ("O_NONBLOCK", LinuxConstants.O_NONBLOCK), ("O_CREAT", LinuxConstants.O_CREAT),
            ("MAP_NORESERVE", LinuxConstants.MAP_NORESERVE), ("MAP_ANONYMOUS", LinuxConstants.MAP_ANONYMOUS), ("MAP_HUGETLB", LinuxConstants.MAP_HUGETLB), ("MAP_POPULATE", LinuxConstants.MAP_POPULATE),
            ("MS_BIND", (long)LinuxConstants.MS_BIND), ("MS_REC", (long)LinuxConstants.MS_REC), ("MS_SHARED", (long)LinuxConstants.MS_SHARED), ("MS_SLAVE", (long)LinuxConstants.MS_SLAVE), ("MNT_DETACH", LinuxConstants.MNT_DETACH),
            ("EPOLLIN", LinuxConstants.EPOLLIN), ("EPOLLET", (long)LinuxConstants.EPOLLET), ("EPOLL_CLOEXEC", LinuxConstants.EPOLL_CLOEXEC),
            ("TFD_CLOEXEC", LinuxConstants.TFD_CLOEXEC), ("TFD_NONBLOCK", LinuxConstants.TFD_NONBLOCK), ("TFD_TIMER_ABSTIME", LinuxConstants.TFD_TIMER_ABSTIME),
            ("EFD_CLOEXEC", LinuxConstants.EFD_CLOEXEC), ("EFD_NONBLOCK", LinuxConstants.EFD_NONBLOCK), ("CLOCK_MONOTONIC", LinuxConstants.CLOCK_MONOTONIC),
            ("SYS_bpf", LinuxConstants.SYS_bpf), ("SYS_perf_event_open", LinuxConstants.SYS_perf_event_open), ("SYS_memfd_create", LinuxConstants.SYS_memfd_create), ("SYS_pidfd_open", LinuxConstants.SYS_pidfd_open),
        };
        var values = CHeaderProbe.Evaluate(
            ["sys/socket.h", "netinet/in.h", "netinet/tcp.h", "linux/in.h", "sched.h", "fcntl.h", "sys/mman.h", "sys/mount.h", "sys/epoll.h", "sys/timerfd.h", "sys/eventfd.h", "time.h", "sys/syscall.h"],
            pairs.Select(p => p.C));
        var wrong = pairs.Where(p => values[p.C] != p.Ours).Select(p => $"{p.C}: C says {values[p.C]}, we say {p.Ours}").ToList();
        Assert.Empty(wrong);
    }

    [Fact]
    public void ErrnoValuesMatchTheCHeaders()
    {
        var names = Enum.GetValues<Errno>().Where(e => e is not Errno.None and not Errno.ENOTSUPP).ToList();
        var values = CHeaderProbe.Evaluate(["errno.h"], names.Select(n => n.ToString()));
        var wrong = names.Where(n => values[n.ToString()] != (int)n).Select(n => $"{n}: C says {values[n.ToString()]}, we say {(int)n}").ToList();
        Assert.Empty(wrong);
    }

    [Fact]
    public void CmsgMacrosMatchTheCHeaders()
    {
        var values = CHeaderProbe.Evaluate(["sys/socket.h"], ["CMSG_SPACE(4)", "CMSG_LEN(4)", "CMSG_SPACE(16)", "CMSG_LEN(16)"]);
        Assert.Equal(values["CMSG_SPACE(4)"], Cmsg.Space(4));
        Assert.Equal(values["CMSG_LEN(4)"], Cmsg.Len(4));
        Assert.Equal(values["CMSG_SPACE(16)"], Cmsg.Space(16));
        Assert.Equal(values["CMSG_LEN(16)"], Cmsg.Len(16));
    }
}
