using System.ComponentModel;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Netcore.Interop;

namespace Netcore.Netlink;

/// <summary>
/// The kernel rejected a netlink request. <see cref="Win32Exception.NativeErrorCode"/> is the
/// errno; <see cref="ExtendedAckMessage"/> and <see cref="ExtendedAckOffset"/> carry the kernel's
/// extended acknowledgement (NETLINK_EXT_ACK, linux/netlink.h NLMSGERR_ATTR_MSG/OFFS) when sent.
/// </summary>
public class NetlinkException : Win32Exception
{
    /// <summary>Creates an exception for an errno with optional extended-ack details.</summary>
    public NetlinkException(string operation, int errno, string? extendedAckMessage = null, int? extendedAckOffset = null)
        : base(errno, Format(operation, errno, extendedAckMessage, extendedAckOffset))
    {
        Operation = operation;
        ExtendedAckMessage = extendedAckMessage;
        ExtendedAckOffset = extendedAckOffset;
    }

    /// <summary>Creates an exception with a message of its own.</summary>
    protected NetlinkException(string operation, int errno, string message, string? extendedAckMessage, int? extendedAckOffset)
        : base(errno, message)
    {
        Operation = operation;
        ExtendedAckMessage = extendedAckMessage;
        ExtendedAckOffset = extendedAckOffset;
    }

    /// <summary>What was asked, e.g. "RTM_NEWLINK veth0".</summary>
    public string Operation { get; }

    /// <summary>The symbolic errno, e.g. "EEXIST".</summary>
    public string ErrnoName => ((Errno)NativeErrorCode).Name();

    /// <summary>The kernel's extended-ack text, e.g. "Unknown device type"; null when none was sent.</summary>
    public string? ExtendedAckMessage { get; }

    /// <summary>Byte offset, inside the request, of the attribute the kernel objected to; null when none was sent.</summary>
    public int? ExtendedAckOffset { get; }

    private static string Format(string operation, int errno, string? msg, int? offset)
    {
        var e = (Errno)errno;
        string s = string.Create(CultureInfo.InvariantCulture, $"{operation} failed: {e.Name()} ({errno}): {e.Describe()}");
        if (msg is not null)
            s += ": " + msg;
        if (offset is not null)
            s += string.Create(CultureInfo.InvariantCulture, $" (at byte {offset} of the request)");
        return s;
    }
}

/// <summary>
/// The running kernel lacks a feature the request needs (a link kind, a qdisc, a generic netlink
/// family), typically because it was built without it (CONFIG_MODULES off, or the option off).
/// </summary>
public sealed class NetlinkKernelLacksException : NetlinkException
{
    /// <summary>Creates the exception naming the missing <paramref name="feature"/>.</summary>
    public NetlinkKernelLacksException(string operation, string feature, int errno, string? extendedAckMessage = null)
        : base(operation, errno, $"{operation} failed: the kernel lacks {feature} ({((Errno)errno).Name()}{(extendedAckMessage is null ? "" : ": " + extendedAckMessage)})", extendedAckMessage, null)
    {
        Feature = feature;
    }

    /// <summary>What is missing, e.g. "link kind 'vrf'".</summary>
    public string Feature { get; }
}

/// <summary>A dump kept being interrupted (NLM_F_DUMP_INTR: the table changed while it was read) and the retries ran out.</summary>
public sealed class NetlinkDumpInterruptedException : NetlinkException
{
    /// <summary>Creates the exception after <paramref name="attempts"/> attempts.</summary>
    public NetlinkDumpInterruptedException(string operation, int attempts)
        : base(operation, (int)Errno.EINTR, $"{operation}: the dump was interrupted by concurrent changes {attempts} times in a row (NLM_F_DUMP_INTR)", null, null)
    {
        Attempts = attempts;
    }

    /// <summary>How many times the dump was tried.</summary>
    public int Attempts { get; }
}

/// <summary>A netlink message or attribute is malformed (bad lengths, short payloads). The only exception parsers throw for bad input.</summary>
public sealed class NetlinkFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public NetlinkFormatException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public NetlinkFormatException() : base("malformed netlink data") { }

    /// <summary>Creates the exception.</summary>
    public NetlinkFormatException(string message, Exception inner) : base(message, inner) { }

    [DoesNotReturn]
    internal static void Throw(string message) => throw new NetlinkFormatException(message);
}
