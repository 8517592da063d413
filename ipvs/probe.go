package ipvs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/vishvananda/netlink"
)

// procIPVS exists while the ip_vs module is loaded (per network namespace).
const procIPVS = "/proc/net/ip_vs"

// genlFamily is the generic-netlink family IPVS registers (IPVS_GENL_NAME in
// include/uapi/linux/ip_vs.h).
const genlFamily = "IPVS"

// Probe checks that the kernel has IPVS, in the caller's network namespace: /proc/net/ip_vs
// exists and the "IPVS" generic-netlink family resolves. Otherwise it returns an error that
// wraps ErrUnavailable and says what is missing. It never loads a module.
//
// Probing first matters: moby/ipvs resolves the family once per process and, without IPVS,
// sends its requests to family 0, which the kernel acknowledges without doing anything, so
// every operation would "succeed".
func Probe() error {
	return probe(procIPVS, func() error {
		_, err := netlink.GenlFamilyGet(genlFamily)
		return err
	})
}

// probe is Probe with its two checks injectable.
func probe(procPath string, family func() error) error {
	if _, err := os.Stat(procPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: the kernel has no ip_vs (modprobe ip_vs?): %s does not exist", ErrUnavailable, procPath)
		}
		return fmt.Errorf("%w: the kernel has no ip_vs (modprobe ip_vs?): %w", ErrUnavailable, err)
	}
	if err := family(); err != nil {
		return fmt.Errorf("%w: the kernel has no ip_vs (modprobe ip_vs?): generic netlink family %q: %w", ErrUnavailable, genlFamily, err)
	}
	return nil
}
