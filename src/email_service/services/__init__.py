"""email_service.services"""
