namespace ActorRing.Model;
