#pragma warning disable CS8981 // C names (msghdr, iovec, ...) are kept as in the headers
using System.Runtime.InteropServices;

namespace Netcore.Interop;

/// <summary>
/// glibc bindings for the calls the packages make. Every call sets the last P/Invoke error,
/// so callers turn a failure into <see cref="SysCallException"/> with a typed <see cref="Errno"/>.
/// Signatures follow the C prototypes of glibc 2.36 on x86-64 (LP64).
/// </summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc.so.6";

    // --- file descriptors --------------------------------------------------------------
    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags, int mode = 0);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint read(int fd, void* buf, nuint count);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint write(int fd, void* buf, nuint count);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int ioctl(int fd, nuint request, void* arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int ioctl(int fd, nuint request, nint arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int pipe2(int* fds, int flags);

    // --- sockets -----------------------------------------------------------------------
    [LibraryImport(Lib, SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int bind(int fd, void* addr, uint addrlen);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int connect(int fd, void* addr, uint addrlen);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int getsockname(int fd, void* addr, uint* addrlen);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int setsockopt(int fd, int level, int optname, void* optval, uint optlen);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int getsockopt(int fd, int level, int optname, void* optval, uint* optlen);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint sendmsg(int fd, msghdr* msg, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint recvmsg(int fd, msghdr* msg, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sendmmsg(int fd, mmsghdr* msgvec, uint vlen, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int recvmmsg(int fd, mmsghdr* msgvec, uint vlen, int flags, timespec* timeout);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint send(int fd, void* buf, nuint len, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint recv(int fd, void* buf, nuint len, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint sendto(int fd, void* buf, nuint len, int flags, void* addr, uint addrlen);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint recvfrom(int fd, void* buf, nuint len, int flags, void* addr, uint* addrlen);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint if_nametoindex(string name);

    // --- memory ------------------------------------------------------------------------
    [LibraryImport(Lib, SetLastError = true)]
    public static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int munmap(void* addr, nuint length);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int madvise(void* addr, nuint length, int advice);

    // --- namespaces and mounts ---------------------------------------------------------
    [LibraryImport(Lib, SetLastError = true)]
    public static partial int setns(int fd, int nstype);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int unshare(int flags);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mount(string? source, string target, string? fstype, nuint flags, void* data);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int umount2(string target, int flags);

    // --- event loops and timers --------------------------------------------------------
    [LibraryImport(Lib, SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int op, int fd, epoll_event* ev);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int poll(pollfd* fds, nuint nfds, int timeout);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int timerfd_create(int clockid, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int timerfd_settime(int fd, int flags, itimerspec* newValue, itimerspec* oldValue);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int timerfd_gettime(int fd, itimerspec* currValue);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int clock_gettime(int clockid, timespec* tp);

    // --- processes and threads ---------------------------------------------------------
    [LibraryImport(Lib)]
    public static partial int getpid();

    [LibraryImport(Lib)]
    public static partial int gettid();

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int pthread_kill(nuint thread, int sig);

    [LibraryImport(Lib)]
    public static partial nuint pthread_self();

    /// <summary>glibc's syscall(2) for calls it has no wrapper for (bpf, perf_event_open, pidfd_open).</summary>
    [LibraryImport(Lib, SetLastError = true)]
    public static partial long syscall(long number, nint a1, nint a2, nint a3);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial long syscall(long number, nint a1, nint a2, nint a3, nint a4, nint a5);
}

/// <summary>Constants from the Linux UAPI and glibc headers used with <see cref="Libc"/>.</summary>
internal static class LinuxConstants
{
    // sys/socket.h
    public const int AF_UNSPEC = 0, AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10, AF_NETLINK = 16, AF_PACKET = 17;
    public const int SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3;
    public const int SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1, SOL_IP = 0, SOL_IPV6 = 41, SOL_TCP = 6, SOL_NETLINK = 270;
    public const int IPPROTO_IP = 0, IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_IPV6 = 41;
    public const int SO_REUSEADDR = 2, SO_SNDBUF = 7, SO_RCVBUF = 8, SO_REUSEPORT = 15;
    public const int SO_BINDTODEVICE = 25, SO_SNDBUFFORCE = 32, SO_RCVBUFFORCE = 33;
    public const int SO_TIMESTAMPNS = 35; // SO_TIMESTAMPNS_OLD; cmsg type SCM_TIMESTAMPNS
    public const int SCM_TIMESTAMPNS = SO_TIMESTAMPNS;
    public const int MSG_PEEK = 0x2, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, MSG_CMSG_CLOEXEC = 0x40000000;
    // netinet/in.h
    public const int IP_TTL = 2, IP_PKTINFO = 8, IP_RECVTTL = 12, IP_MINTTL = 21, IP_BIND_ADDRESS_NO_PORT = 24;
    public const int IP_LOCAL_PORT_RANGE = 51;
    public const int IPV6_UNICAST_HOPS = 16, IPV6_RECVPKTINFO = 49, IPV6_PKTINFO = 50;
    public const int IPV6_RECVHOPLIMIT = 51, IPV6_HOPLIMIT = 52, IPV6_MINHOPCOUNT = 73;
    public const int TCP_MD5SIG = 14;
    // sched.h
    public const int CLONE_NEWNS = 0x00020000, CLONE_NEWNET = 0x40000000;
    // fcntl.h
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80;
    public const int O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    // sys/mman.h
    public const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    public const int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20;
    public const int MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000, MAP_HUGETLB = 0x40000;
    public const int MADV_DONTNEED = 4, MADV_HUGEPAGE = 14;
    // sys/mount.h
    public const nuint MS_RDONLY = 1, MS_BIND = 4096, MS_REC = 16384, MS_PRIVATE = 1 << 18, MS_SLAVE = 1 << 19, MS_SHARED = 1 << 20;
    public const int MNT_DETACH = 2;
    // sys/epoll.h
    public const uint EPOLLIN = 0x001, EPOLLPRI = 0x002, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010;
    public const uint EPOLLET = 1u << 31;
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3, EPOLL_CLOEXEC = 0x80000;
    // poll.h
    public const short POLLIN = 0x001, POLLOUT = 0x004, POLLERR = 0x008, POLLHUP = 0x010;
    // time.h, sys/timerfd.h, sys/eventfd.h
    public const int CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1;
    public const int TFD_TIMER_ABSTIME = 1, TFD_NONBLOCK = 0x800, TFD_CLOEXEC = 0x80000;
    public const int EFD_SEMAPHORE = 1, EFD_NONBLOCK = 0x800, EFD_CLOEXEC = 0x80000;
    // asm/unistd_64.h (x86-64)
    public const long SYS_bpf = 321, SYS_perf_event_open = 298, SYS_memfd_create = 319, SYS_pidfd_open = 434;
}
