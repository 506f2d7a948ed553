// A vargid client in Go (grpc-go): enroll a person from photos, then find out who is
// in a photo.
//
//	./generate.sh                      # the stubs, from ../../proto
//	go run . enroll alice a.jpg b.jpg  # --name "Alice A." --gallery NAME
//	go run . identify group.jpg        # --top-k 3
//
// The server is $VARGID_ADDRESS (default 127.0.0.1:50051); $VARGID_API_KEY, when set,
// is sent as "authorization: Bearer KEY". A refused call prints its gRPC status code
// and the server's message, and exits with status 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "vargid.dev/examples/go/vargidpb"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go run . enroll ID PHOTO... | identify PHOTO")
		os.Exit(2)
	}
	address := os.Getenv("VARGID_ADDRESS")
	if address == "" {
		address = "127.0.0.1:50051"
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "vargid: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := pb.NewFaceServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if key := os.Getenv("VARGID_API_KEY"); key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	}

	switch os.Args[1] {
	case "enroll":
		err = enroll(ctx, client, os.Args[2:])
	case "identify":
		err = identify(ctx, client, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (enroll or identify)", os.Args[1])
	}
	if err != nil {
		if s, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "%s: %s: %s\n", os.Args[1], s.Code(), s.Message())
		} else {
			fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		}
		os.Exit(1)
	}
}

func photo(path string) (*pb.Image, error) {
	bytes, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &pb.Image{Source: &pb.Image_Encoded{Encoded: bytes}}, nil
}

func enroll(ctx context.Context, client pb.FaceServiceClient, args []string) error {
	flags := flag.NewFlagSet("enroll", flag.ExitOnError)
	name := flags.String("name", "", "display name")
	gallery := flags.String("gallery", "", "gallery (default: the server's default)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() < 2 {
		return fmt.Errorf("usage: enroll [--name NAME] ID PHOTO...")
	}
	request := &pb.EnrollRequest{IdentityId: flags.Arg(0), DisplayName: *name, Gallery: *gallery}
	for _, path := range flags.Args()[1:] {
		image, err := photo(path)
		if err != nil {
			return err
		}
		request.Images = append(request.Images, image)
	}
	reply, err := client.Enroll(ctx, request)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d templates added, %d in all\n", reply.IdentityId, len(reply.FaceIds), reply.FaceCount)
	return nil
}

func identify(ctx context.Context, client pb.FaceServiceClient, args []string) error {
	flags := flag.NewFlagSet("identify", flag.ExitOnError)
	topK := flags.Uint("top-k", 3, "candidates per face")
	gallery := flags.String("gallery", "", "gallery (default: the server's default)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return fmt.Errorf("usage: identify [--top-k N] PHOTO")
	}
	image, err := photo(flags.Arg(0))
	if err != nil {
		return err
	}
	reply, err := client.Identify(ctx, &pb.IdentifyRequest{Image: image, TopK: uint32(*topK), Gallery: *gallery})
	if err != nil {
		return err
	}
	if len(reply.Faces) == 0 {
		fmt.Println("no face found")
	}
	for i, face := range reply.Faces {
		box := face.GetFace().GetBox()
		fmt.Printf("face %d at x=%.0f y=%.0f %.0fx%.0f\n", i+1, box.GetX(), box.GetY(), box.GetWidth(), box.GetHeight())
		for _, c := range face.Candidates {
			match := "-"
			if c.IsMatch {
				match = "MATCH"
			}
			fmt.Printf("  %s %.3f %s\n", c.IdentityId, c.Score, match)
		}
	}
	return nil
}
